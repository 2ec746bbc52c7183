"""NIST P-256 arithmetic and ECDSA-SHA256 in pure Python. No side effects.

Only the simulators use it, to give the injected bundle real keys and certificates without a
compiled crypto dependency. It is not constant-time: never use it for real credentials.
"""

from __future__ import annotations

import hashlib
import secrets

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

Point = tuple[int, int]
# Jacobian coordinates (X, Y, Z) stand for the affine point (X/Z², Y/Z³); Z == 0 is infinity.
_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)


def _double(pt: _Jacobian) -> _Jacobian:
    x, y, z = pt
    if z == 0 or y == 0:
        return _INFINITY
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    # a = -3 lets the tangent slope use (x - z²)(x + z²), one multiplication fewer.
    m = 3 * (x - zz) * (x + zz) % P
    nx = (m * m - 2 * s) % P
    ny = (m * (s - nx) - 8 * yy * yy) % P
    nz = 2 * y * z % P
    return nx, ny, nz


def _add(p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    if p1[2] == 0:
        return p2
    if p2[2] == 0:
        return p1
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p1) if s1 == s2 else _INFINITY
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    nx = (r * r - hhh - 2 * v) % P
    ny = (r * (v - nx) - s1 * hhh) % P
    nz = h * z1 * z2 % P
    return nx, ny, nz


def _to_affine(pt: _Jacobian) -> Point | None:
    x, y, z = pt
    if z == 0:
        return None
    zinv = pow(z, -1, P)
    zinv2 = zinv * zinv % P
    return x * zinv2 % P, y * zinv2 * zinv % P


def multiply(k: int, point: Point = G) -> Point:
    """k·point in affine coordinates; k must be in [1, N-1]."""
    if not 0 < k < N:
        raise ValueError("scalar out of range")
    acc = _INFINITY
    addend: _Jacobian = (point[0], point[1], 1)
    while k:
        if k & 1:
            acc = _add(acc, addend)
        addend = _double(addend)
        k >>= 1
    result = _to_affine(acc)
    if result is None:
        raise ValueError("point at infinity")
    return result


def on_curve(point: Point) -> bool:
    """True when point satisfies y² = x³ + ax + b over the field."""
    x, y = point
    return (y * y - (x * x * x + A * x + B)) % P == 0


def new_private_key() -> int:
    """A uniformly random scalar in [1, N-1]."""
    return secrets.randbelow(N - 1) + 1


def sign(private_key: int, message: bytes) -> tuple[int, int]:
    """ECDSA signature (r, s) of SHA-256(message)."""
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    while True:
        k = new_private_key()
        r = multiply(k)[0] % N
        if r == 0:
            continue
        s = pow(k, -1, N) * (e + r * private_key) % N
        if s != 0:
            return r, s


def verify(public_key: Point, message: bytes, signature: tuple[int, int]) -> bool:
    """True when signature is a valid ECDSA-SHA256 signature of message by public_key."""
    r, s = signature
    if not (0 < r < N and 0 < s < N) or not on_curve(public_key):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, N)
    u1 = e * w % N
    u2 = r * w % N
    total = _INFINITY
    if u1:
        g1 = multiply(u1)
        total = _add(total, (g1[0], g1[1], 1))
    if u2:
        q2 = multiply(u2, public_key)
        total = _add(total, (q2[0], q2[1], 1))
    point = _to_affine(total)
    return point is not None and point[0] % N == r
