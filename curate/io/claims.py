"""Which files a command reads and which it writes, checked once before anything is written.

Commands declare their path arguments with ``type=InputPath`` and
``type=OutputPath`` (``str`` subclasses, so the code that reads ``args`` does
not change), and the CLI runs every command inside ``guard(args)``, which
hands the declared paths to ``claim``. Commands whose paths come from
elsewhere (training reads them from a YAML config) call ``claim`` themselves.
``claim``:

* refuses, with one line naming both paths (exit 2), any output that is the
  same file as an input: the same resolved path, or the same inode (a
  symlink, a hard link, ``./a`` and ``a``). ``--rejects in.jsonl`` used to
  leave the input empty;
* takes an exclusive lock on every output (``OutputLock``), so a second run
  writing the same file stops at once instead of interleaving duplicates;
* remembers the inputs while the command runs, so every writer also checks the
  paths the command derives itself (``OUT.removed.jsonl``, the files inside an
  output folder) when it opens them, still before it writes (``check_output``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError


class InputPath(str):
    """An argument naming a file or folder the command reads (``path`` when the value holds more)."""

    path: str

    def __new__(cls, value: str, path: str | None = None) -> InputPath:
        self = super().__new__(cls, value)
        self.path = path if path is not None else value
        return self


class OutputPath(str):
    """An argument naming a file or folder the command writes."""


class SamePathError(ThresherError):
    """An output that would overwrite an input (a usage error, exit 2)."""


class OutputLocked(ThresherError):
    """Another live run holds the lock on an output (exit 2)."""


@dataclass(frozen=True)
class _File:
    given: str
    resolved: Path
    inode: tuple[int, int] | None

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> _File:
        resolved = Path(path).expanduser().resolve()
        try:
            stat = resolved.stat()
        except OSError:
            return cls(str(path), resolved, None)
        return cls(str(path), resolved, (stat.st_dev, stat.st_ino))

    def same(self, other: _File) -> bool:
        return self.resolved == other.resolved or (self.inode is not None and self.inode == other.inode)


#: The inputs of the commands running in this context (a recipe's stages nest inside the recipe).
_INPUTS: ContextVar[tuple[_File, ...]] = ContextVar("thresher_inputs", default=())


def declared(args: Any) -> tuple[list[str], list[str]]:
    """(inputs, outputs) named by ``InputPath`` / ``OutputPath`` values of a parsed namespace."""
    inputs: list[str] = []
    outputs: list[str] = []
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, InputPath):
                inputs.append(item.path)
            elif isinstance(item, OutputPath):
                outputs.append(str(item))
    return inputs, outputs


def _conflict(output: _File, inputs: Iterable[_File]) -> None:
    for source in inputs:
        if output.same(source):
            raise SamePathError(
                f"{output.given}: this output is the input {source.given}; writing it would destroy the input, "
                "so choose another path"
            )


def check_output(path: str | os.PathLike[str]) -> None:
    """Raise ``SamePathError`` if ``path`` is an input of a running command (writers call this on open)."""
    inputs = _INPUTS.get()
    if inputs:
        _conflict(_File.of(path), inputs)


@contextmanager
def claim(inputs: Iterable[str | os.PathLike[str]], outputs: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    """Check ``outputs`` against ``inputs``, lock the outputs, and keep the inputs for the writers' checks."""
    files = [_File.of(path) for path in inputs if path]
    targets = [str(path) for path in outputs if path]
    for target in targets:
        _conflict(_File.of(target), files)
    token = _INPUTS.set((*_INPUTS.get(), *files))
    try:
        with ExitStack() as locks:
            for target in dict.fromkeys(targets):
                locks.enter_context(OutputLock(target))
            yield
    finally:
        _INPUTS.reset(token)


@contextmanager
def guard(args: Any) -> Iterator[None]:
    """``claim`` the paths a parsed command line declares (see the module docstring)."""
    with claim(*declared(args)):
        yield


#: Lock files this process holds, with how many times (a recipe's stage may lock its run's files again).
_HELD: dict[str, int] = {}


def lock_path(output: str | os.PathLike[str]) -> Path:
    """``dir/out.jsonl`` -> ``dir/.out.jsonl.lock`` (beside the output, so a folder output stays clean)."""
    target = Path(output).expanduser().resolve()
    return target.with_name(f".{target.name}.lock")


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class OutputLock:
    """An exclusive lock on one output: the file ``.NAME.lock`` beside it, holding ``pid host``.

    The holder keeps an ``flock`` on the lock file, so two runs starting at once
    cannot both win. A lock file left by a run that died (``kill -9``, a power
    cut) is stale: no process holds its ``flock`` and the PID it names is gone,
    so the next run takes it over. A lock file naming a live process on this
    host is respected even without an ``flock`` (a file system that has none).
    Released (the file removed) when the block exits, however it exits. The
    processes of one distributed run share rank 0's lock.
    """

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = str(output)
        self.path = lock_path(output)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        key = str(self.path)
        if os.environ.get("RANK", "0") != "0":
            return self  # a distributed run (torchrun, accelerate) is one run: rank 0 holds its locks
        if key in _HELD:
            _HELD[key] += 1
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._acquire()
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            self._fd = None  # a folder we may not write to: the write itself will say so
            return self
        _HELD[key] = 1
        return self

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 200).decode("utf-8", "replace").split()
                os.close(fd)
                self._refuse(owner)
            except OSError as exc:  # no flock on this file system: the PID alone decides
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
                    os.close(fd)
                    raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and flock
                os.close(fd)
                continue
            owner = os.read(fd, 200).decode("utf-8", "replace").split()
            if len(owner) == 2 and owner[1] == socket.gethostname() and owner[0].isdigit():
                pid = int(owner[0])
                if pid != os.getpid() and process_alive(pid):
                    os.close(fd)
                    self._refuse(owner)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return fd

    def _refuse(self, owner: list[str]) -> None:
        who = f"process {owner[0]} on {owner[1]}" if len(owner) == 2 else "another process"
        raise OutputLocked(
            f"{self.output}: another thresher run ({who}) is writing it; wait for it to finish, "
            f"or delete {self.path} if that run is gone"
        )

    def __exit__(self, *exc: Any) -> None:
        key = str(self.path)
        if key not in _HELD:
            return
        _HELD[key] -= 1
        if _HELD[key]:
            return
        del _HELD[key]
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # unlink while holding the flock, then let go
            os.close(self._fd)
            self._fd = None
