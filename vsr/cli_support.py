"""What every ``vsr`` command shares: printing what a user gave literally, the one-line ``error:`` report
(exit status 2) of every error a user can cause, Ctrl-C's message of what was saved (status 130), and the
checks of options that must fail before any work.
"""

from __future__ import annotations

import errno
import functools
import json
import os
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.text import Text

from vsr.errors import ArgumentError, VSRError, shorten
from vsr.registry import import_plugins

console = Console()

ImportOption = Annotated[
    list[str] | None,
    typer.Option("--import", help="Import a module of your own first, e.g. my_package.my_parts (repeatable)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a recipe key, e.g. --set model.alignment=none (repeatable)."),
]

#: The most characters of one printed message (a message quoting a huge value is cut in the middle).
MESSAGE_CHARS = 2000
USER_ERROR = 2  # the exit status of every reported error
INTERRUPTED = 130


def say(*parts: str | tuple[str, str]) -> None:
    """Print one message: each part a text, or a ``(text, style)`` pair. Texts are printed literally (a path
    holding ``[red]`` shows as written; rich markup is never read from them) and not wrapped."""
    console.print(Text.assemble(*parts), highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: <message>`` (one line, bounded) and return the exit of a user error, to raise."""
    say(("error:", "bold red"), " ", shorten(" ".join(message.split()), MESSAGE_CHARS))
    return typer.Exit(USER_ERROR)


def os_error_message(err: OSError) -> str:
    """An ``OSError`` as what happened to which path and what to do about it."""
    path = shorten(str(err.filename)) if err.filename is not None else None
    code = err.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        where = f" while writing {path}" if path else ""
        return (f"the disk is full (no space left on the device){where}; free some space there or write "
                "elsewhere, then run the command again")  # fmt: skip
    if path is None:
        return f"{err.strerror or err}"
    messages = {
        errno.EACCES: f"permission denied: {path}; choose a path you may read and write, or change its permissions",
        errno.EPERM: f"operation not permitted on {path}; choose another path, or change its permissions",
        errno.EROFS: f"{path} is on a read-only file system; choose a path on a writable disk",
        errno.ENOTDIR: f"{path}: a part of this path is a file, not a folder; choose another path",
        errno.EEXIST: f"{path} already exists; choose another path, or move it away first",
        errno.ENOENT: f"{path} does not exist; check the path (the folder that should hold it must exist)",
        errno.EISDIR: f"{path} is a folder where a file is expected; name a file",
        errno.ENAMETOOLONG: f"{path}: the path is too long; choose a shorter one",
        errno.EFBIG: f"{path} would be larger than its file system or a file-size limit (ulimit -f) allows; write "
        "it to another disk",
    }
    return messages.get(code, f"{err.strerror or err}: {path}")


def reports_errors(command):
    """Print errors a user can cause as one ``error:`` line (no traceback) and exit with status 2: vsr's own
    (:class:`VSRError`), file-system errors (:func:`os_error_message`), files that do not decode. Ctrl-C
    prints what was saved (the message a command attaches to the ``KeyboardInterrupt``) and exits with 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VSRError as err:
            raise fail(str(err)) from None
        except OSError as err:
            raise fail(os_error_message(err)) from None
        except UnicodeDecodeError as err:
            raise fail(f"a file given is not UTF-8 text ({err.reason} at byte {err.start}); check the paths") from None
        except json.JSONDecodeError as err:
            raise fail(
                f"a JSON file is not valid ({err.msg} at line {err.lineno}); it was cut short or edited"
            ) from None
        except yaml.YAMLError as err:
            problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise fail(f"a YAML file or value is not valid ({problem})") from None
        except KeyboardInterrupt as err:
            said = err.args[0] if err.args and isinstance(err.args[0], str) else None
            say((shorten(said or "interrupted before the command finished; run it again", MESSAGE_CHARS), "yellow"))
            raise typer.Exit(INTERRUPTED) from None

    return wrapper


def interrupted(message: str) -> KeyboardInterrupt:
    """A ``KeyboardInterrupt`` that says what was saved (printed by :func:`reports_errors`), to raise."""
    return KeyboardInterrupt(message)


def check_output(path: Path | None, option: str, folder: bool = True) -> None:
    """Refuse an output path that cannot be right, before any work: the current folder or one above it
    (writing or replacing it would touch everything in it), a file where a ``folder`` is needed, a path
    under a file, or a path whose nearest existing folder is not writable."""
    if path is None:
        return
    resolved = path.resolve()
    if Path.cwd().resolve().is_relative_to(resolved):
        raise ArgumentError(
            f"{option} {path} is the current folder (or one above it); name a new folder for the output, "
            f"e.g. {option} out"
        )
    if folder and resolved.exists() and not resolved.is_dir():
        raise ArgumentError(f"{option} {path} is a file, not a folder; choose another path")
    existing = next(p for p in resolved.parents if p.exists()) if not resolved.exists() else None
    if existing is not None and not existing.is_dir():
        raise ArgumentError(f"{option} {path} cannot be created: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ArgumentError(f"{option} {path} cannot be created: {existing} is not writable (permission denied)")


def check_at_least(minimum: int, **options: int | None) -> None:
    """Refuse an integer option below ``minimum``, e.g. ``check_at_least(0, chunk_size=-1)``."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise ArgumentError(f"--{name.replace('_', '-')} {value}: must be at least {minimum}")


def check_device(device: str | None) -> None:
    """Refuse a ``--device`` torch does not know (``banana``), or CUDA where there is none, before any work."""
    if device is not None:
        from vsr.device import default_device  # loads torch: only when a command runs

        default_device(device)


def use_plugins(modules: list[str] | None) -> None:
    """Import the ``--import`` modules before anything is validated (what they register joins its kind)."""
    import_plugins(modules or [], key="--import")
