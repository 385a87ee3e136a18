"""A recorded stack trace (an ErrorObject's ``StackTrace``) with the user's frames in front.

The SDK records ``traceback.format_exception`` chunks: a header, one chunk per frame
(``  File "path", line N, in fn`` and its source line), and the exception line(s). Frames
of durable_sync itself, of installed packages and of the standard library are library
frames: a reader wants the frames of their own code, so runs of library frames fold into
one line.
"""
from __future__ import annotations

import os
import re
import sysconfig
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ["Frame", "Trace", "parse_trace", "format_trace"]

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]*)", line (?P<line>\d+), in (?P<fn>.*)$')
# where library code lives on the machine that recorded the trace: installed packages, the standard
# library, Lambda's runtime (/var/runtime, /var/lang) and durable_sync packaged with a function (/var/task)
_LIBRARY = re.compile(r"[/\\](site|dist)-packages[/\\]|[/\\]lib[/\\]python3[.\d]*[/\\]|^/var/(runtime|lang)/"
                      r"|^/var/task/durable_sync/|^<frozen ")
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this durable_sync package
_STDLIB = sysconfig.get_paths().get("stdlib") or "\0"


@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    function: str
    text: str  # the frame's chunk as recorded (location line, source line, carets)
    library: bool


@dataclass(frozen=True)
class Trace:
    """A parsed stack trace: frames outermost first, then the exception line(s)."""

    frames: tuple[Frame, ...]
    exception: tuple[str, ...]
    header: str = "Traceback (most recent call last):"

    @property
    def user_frames(self) -> tuple[Frame, ...]:
        return tuple(f for f in self.frames if not f.library)

    def segments(self) -> list[tuple[bool, list[Frame]]]:
        """Consecutive frames grouped: ``(library, frames)`` in order."""
        out: list[tuple[bool, list[Frame]]] = []
        for frame in self.frames:
            if out and out[-1][0] == frame.library:
                out[-1][1].append(frame)
            else:
                out.append((frame.library, [frame]))
        return out


def is_library_path(path: str) -> bool:
    """A frame of durable_sync, of an installed package or of the standard library (not the user's code)."""
    return path.startswith((_HERE + os.sep, _STDLIB + os.sep)) or bool(_LIBRARY.search(path))


def parse_trace(stack_trace: Optional[Sequence[str]]) -> Optional[Trace]:
    """A :class:`Trace` from a recorded ``StackTrace`` (a list of strings), or None when there is none."""
    if not stack_trace or not isinstance(stack_trace, (list, tuple)):
        return None
    frames: list[Frame] = []
    exception: list[str] = []
    header = "Traceback (most recent call last):"
    for chunk in stack_trace:
        chunk = str(chunk).rstrip("\n")
        first = chunk.split("\n", 1)[0]
        match = _FRAME.match(first)
        if match:
            if exception:  # a chained exception's frames follow its cause: keep only the last exception's
                frames, exception = [], []
            path = match["path"]
            frames.append(Frame(path, int(match["line"]), match["fn"], chunk, is_library_path(path)))
        elif first.startswith("Traceback"):
            header = first
        elif chunk.strip():
            exception.append(chunk)
    if not frames and not exception:
        return None
    return Trace(tuple(frames), tuple(exception), header)


def format_trace(stack_trace: Optional[Sequence[str]], *, indent: str = "") -> str:
    """The trace as text, library frames folded into one line per run; empty when there is none."""
    trace = parse_trace(stack_trace)
    if trace is None:
        return ""
    lines = [trace.header]
    for library, frames in trace.segments():
        if library and trace.user_frames:
            lines.append(f"  [{len(frames)} library frame{'s' if len(frames) != 1 else ''} folded: "
                         f"{', '.join(dict.fromkeys(f.function for f in frames))}]")
        else:
            lines.extend(f.text for f in frames)
    lines.extend(trace.exception)
    return "\n".join(indent + line for text in lines for line in text.split("\n"))
