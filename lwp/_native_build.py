# Builds the lwp._native extension (cffi API, out-of-line mode) from csrc/.
#
# Only `ffi` is meant to be imported from here, by setup.py's cffi_modules or
# by running this file directly to build in place:
#
#     python lwp/_native_build.py      # -> lwp/_native.cpython-3XY-<platform>.so
#
# Programs import lwp._native (through lwp._core.native), never this module.
import os
import sys
import sysconfig

_here = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    # Run as a script, this file's directory (lwp/) is first on sys.path, where
    # lwp/select.py, lwp/socket.py ... would shadow the standard modules that
    # cffi and setuptools import.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

from cffi import FFI  # after the sys.path fix above

_root = os.path.dirname(_here)
_csrc = os.path.join(_root, "csrc")


def _read(name):
    with open(os.path.join(_csrc, name), encoding="utf-8") as f:
        return f.read()


# The declarations come from the real headers, between their markers, so the
# C and the cdef cannot drift apart.
_HEADERS = ["activations.h", "activations_py.h", "event_py.h", "io_py.h", "park_py.h",
            "preempt.h"]
_SOURCES = ["activations.c", "activations_py.c", "event_py.c", "io_py.c", "park_lock.c",
            "park_py.c", "preempt.c", "slots.c"]


def _cdef_of(header):
    text = _read(header).split("/* LWP_CDEF_BEGIN", 1)[1].split("*/", 1)[1]
    return text.split("/* LWP_CDEF_END */", 1)[0]


_cdef = "".join(_cdef_of(h) for h in _HEADERS)

# The system types the header uses, declared partially ("...") so the C
# compiler supplies their real sizes and layouts; plus the bits of libc that
# lwp._core.native needs to turn results into Python objects.
_system_cdef = """
typedef int... socklen_t;
typedef int... sa_family_t;
typedef int... in_port_t;
struct sockaddr { sa_family_t sa_family; ...; };
struct in_addr { ...; };
struct in6_addr { ...; };
struct sockaddr_in {
    sa_family_t sin_family; in_port_t sin_port; struct in_addr sin_addr; ...;
};
struct sockaddr_in6 {
    sa_family_t sin6_family; in_port_t sin6_port; uint32_t sin6_flowinfo;
    struct in6_addr sin6_addr; uint32_t sin6_scope_id; ...;
};
struct addrinfo {
    int ai_flags; int ai_family; int ai_socktype; int ai_protocol;
    socklen_t ai_addrlen; struct sockaddr *ai_addr; char *ai_canonname;
    struct addrinfo *ai_next; ...;
};
#define NI_MAXHOST ...
#define NI_MAXSERV ...
const char *gai_strerror(int errcode);
"""

ffi = FFI()
ffi.cdef(_system_cdef + _cdef)
ffi.set_source(
    "lwp._native",
    """
    #include <netinet/in.h>
    #include "activations.h"
    #include "activations_py.h"
    #include "event_py.h"
    #include "io_py.h"
    #include "park_py.h"
    #include "preempt.h"
    """,
    # setuptools wants source paths relative to the project root, where it
    # runs setup.py; ffi.compile() below runs from there too.
    sources=[os.path.relpath(os.path.join(_csrc, c), _root) for c in _SOURCES],
    depends=[os.path.relpath(os.path.join(_csrc, h), _root)
             for h in _HEADERS + ["builtins.h", "park_door.h", "park_lock.h", "slots.h"]],
    include_dirs=[_csrc],
    # Full C API, not the limited one (abi3): preempt.c reads the thread
    # state (PyThreadState.c_tracefunc, .thread_id) and calls
    # _PyEval_SetTrace(), whose layout and existence vary with the CPython
    # version, so the module must be built for, and named after, one version
    # (lwp/_native.cpython-311-x86_64-linux-gnu.so, not lwp/_native.abi3.so).
    # cffi keeps the generated module off the limited API on this macro.
    py_limited_api=False,
    define_macros=[("_CFFI_NO_LIMITED_API", None)],
    extra_compile_args=["-pthread"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    # Same file name as setup.py's build (the full API: one CPython version),
    # so neither build leaves a stale module shadowing the other's.  A stale
    # lwp/_native.abi3.so from before the switch is harmless: the
    # version-specific name comes first in EXTENSION_SUFFIXES.
    _suffix = sysconfig.get_config_var("EXT_SUFFIX")
    # ffi.compile() works in tmpdir: the generated lwp/_native.c and the
    # objects stay in the (git-ignored) source tree, the module lands here.
    ffi.compile(tmpdir=_root, target=os.path.join(_here, "_native" + _suffix), verbose=True)
