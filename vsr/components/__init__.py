"""Interchangeable VSR components, one module per kind (BasicVSR's four functionalities plus IconVSR's refill
and RealBasicVSR's cleaning).

Each kind has a small documented interface (an abstract base in its module); every registered component
honours it, and :mod:`vsr.model` depends only on those interfaces. The kinds and their components live in
the one registry of :mod:`vsr.registry` (``KIND_SPECS[kind]`` says what the model wires into a kind and
whether ``none`` is a choice; ``REGISTRY[kind]`` maps recipe names to classes; :func:`register` adds one).
"""

from vsr.registry import COMPONENT_KINDS, KIND_SPECS, REGISTRY, Allowed, KindSpec, declare_kind, register  # isort: skip
from vsr.components.aggregation import Aggregation, DirectionFusion, PlainAggregation, ResidualAggregation
from vsr.components.alignment import (
    Alignment,
    FeatureAlignment,
    FlowGuidedDeformableAlignment,
    ImageAlignment,
    NoAlignment,
)
from vsr.components.blocks import ResidualBlock
from vsr.components.cleaning import Cleaning, ResidualCleaning
from vsr.components.flow import FlowEstimator, SPyNet, flow_warp
from vsr.components.propagation import (
    BidirectionalPropagation,
    ClipFlows,
    CoupledPropagation,
    GridPropagation,
    LocalPropagation,
    Propagation,
    PropagationLayout,
    UnidirectionalPropagation,
)
from vsr.components.refill import InformationRefill, Refill, RefillState
from vsr.components.upsampling import InterpolateConvUpsampling, PixelShuffleUpsampling, Upsampling

__all__ = [
    "COMPONENT_KINDS",
    "KIND_SPECS",
    "REGISTRY",
    "Aggregation",
    "Alignment",
    "Allowed",
    "BidirectionalPropagation",
    "Cleaning",
    "ClipFlows",
    "CoupledPropagation",
    "DirectionFusion",
    "FeatureAlignment",
    "FlowEstimator",
    "FlowGuidedDeformableAlignment",
    "GridPropagation",
    "ImageAlignment",
    "InformationRefill",
    "InterpolateConvUpsampling",
    "KindSpec",
    "LocalPropagation",
    "NoAlignment",
    "PixelShuffleUpsampling",
    "PlainAggregation",
    "Propagation",
    "PropagationLayout",
    "Refill",
    "RefillState",
    "ResidualAggregation",
    "ResidualBlock",
    "ResidualCleaning",
    "SPyNet",
    "UnidirectionalPropagation",
    "Upsampling",
    "declare_kind",
    "flow_warp",
    "register",
]
