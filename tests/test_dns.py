"""lwp.dns: same results and errors as the socket module, off the LWP."""

import socket

import pytest

import lwp


def test_getaddrinfo_matches_stdlib():
    def main():
        return (lwp.dns.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM),
                lwp.dns.getaddrinfo("127.0.0.1", "http", socket.AF_INET, socket.SOCK_STREAM),
                lwp.dns.getaddrinfo("::1", 443, socket.AF_INET6, socket.SOCK_STREAM))

    got = lwp.run(main)
    assert got[0] == socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert got[1] == socket.getaddrinfo("127.0.0.1", "http", socket.AF_INET, socket.SOCK_STREAM)
    assert got[2][0][4][:2] == ("::1", 443)


def test_getaddrinfo_errors():
    def main():
        with pytest.raises(socket.gaierror) as info:
            lwp.dns.getaddrinfo("no-such-host.invalid", 80)
        with pytest.raises(socket.gaierror):
            lwp.dns.getaddrinfo("not numeric", 80, flags=socket.AI_NUMERICHOST)
        return info.value.errno

    assert lwp.run(main) in (socket.EAI_NONAME, socket.EAI_AGAIN, getattr(socket, "EAI_NODATA", -5))


def test_getnameinfo_matches_stdlib():
    def main():
        return (lwp.dns.getnameinfo(("127.0.0.1", 80), 0),
                lwp.dns.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV))

    named, numeric = lwp.run(main)
    assert named == socket.getnameinfo(("127.0.0.1", 80), 0)
    assert numeric == ("127.0.0.1", "80")


def test_plain_thread_uses_socket_module():
    assert lwp.dns.getaddrinfo("127.0.0.1", 1) == socket.getaddrinfo("127.0.0.1", 1)
