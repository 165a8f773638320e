"""Which extra modules the agent's code may import: the app's ``additional_authorized_imports``,
checked against :data:`DENIED_MODULES` before the sandbox starts.

smolagents lets code import what the list names (``"*"``: anything). A module that reaches files,
processes, the network, signals, the interpreter's internals or unpickling would undo the sandbox,
so naming one raises :class:`UnsafeImportError` unless the caller passes ``allow_unsafe_imports=True``
(``MC_SDK_ALLOW_UNSAFE_IMPORTS=1``). A submodule (``os.path``) or pattern (``os.*``) is judged by its top
package. The list is a judgement, not a proof: an allowed third-party package (numpy, pandas) can
still read files; the process's limits (``limits.py``) are the next wall.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec

from schemas.errors import SandboxError

__all__ = ["DENIED_MODULES", "UnsafeImportError", "check_authorized_imports"]

#: top-level modules the agent's code may not import unless the caller opts in
DENIED_MODULES: frozenset[str] = frozenset(
    {
        "*",
        # processes, threads, signals, the OS and its users
        *("os", "posix", "nt", "sys", "subprocess", "multiprocessing", "threading", "_thread", "concurrent"),
        *("asyncio", "signal", "resource", "pty", "tty", "termios", "fcntl", "mmap", "pwd", "grp", "platform"),
        *("sysconfig", "site", "atexit", "faulthandler", "tracemalloc", "_posixsubprocess"),
        # the interpreter itself: code objects, frames, finders, the garbage collector's object graph
        *("builtins", "__builtin__", "importlib", "pkgutil", "runpy", "zipimport", "imp", "ctypes", "cffi"),
        *("code", "codeop", "compileall", "py_compile", "gc", "inspect", "types", "operator"),
        # linecache and traceback read any file by name
        *("traceback", "linecache"),
        # files and the file system
        *("io", "_io", "codecs", "pathlib", "tempfile", "glob", "shutil", "fileinput", "filecmp", "logging"),
        *("zipfile", "tarfile", "gzip", "bz2", "lzma", "sqlite3", "dbm", "shelve", "mailbox"),
        # unpickling runs arbitrary code
        *("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal"),
        # the network
        *("socket", "_socket", "ssl", "select", "selectors", "socketserver", "http", "urllib", "urllib3"),
        *("requests", "httpx", "httpcore", "aiohttp", "websocket", "websockets", "ftplib", "smtplib"),
        *("poplib", "imaplib", "telnetlib", "nntplib", "xmlrpc", "webbrowser", "wsgiref"),
    }
)


class UnsafeImportError(SandboxError):
    """``additional_authorized_imports`` names a module on the deny list and the caller did not opt in."""

    def __init__(self, refused: Sequence[str]) -> None:
        self.refused = tuple(refused)
        names = ", ".join(repr(name) for name in self.refused)
        super().__init__(
            f"additional_authorized_imports refused: {names}. These modules give the agent's code files, "
            "processes, the network or the interpreter's internals. Remove them, or pass "
            "allow_unsafe_imports=True to predict (or set MC_SDK_ALLOW_UNSAFE_IMPORTS=1) to allow them at your "
            "own risk."
        )


def _top(name: str) -> str:
    return name.strip().split(".", 1)[0]


def check_authorized_imports(imports: Sequence[str], *, allow_unsafe: bool = False) -> list[str]:
    """The imports, checked; raise :class:`UnsafeImportError` for denied ones (unless ``allow_unsafe``)
    and :class:`~schemas.errors.SandboxError` for modules that are not installed."""
    names = [str(name).strip() for name in imports]
    refused = [name for name in names if _top(name) in DENIED_MODULES]
    if refused and not allow_unsafe:
        raise UnsafeImportError(refused)
    # smolagents checks this too, but in the sandbox process: here the app hears it at the call
    missing = sorted({_top(name) for name in names if name != "*" and find_spec(_top(name)) is None})
    if missing:
        raise SandboxError(f"additional_authorized_imports names modules that are not installed: {', '.join(missing)}")
    return names
