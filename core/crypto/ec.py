"""SM2 recommended-curve arithmetic (GB/T 32918.5) on Python ints, in Jacobian coordinates.

Why our own code rather than pysmx's: pysmx's ``kG`` converts to and from hex strings on every call and
its mixed addition has no doubling / inverse special cases (fine inside its own ``k < n`` loop, wrong for a
general ``sG + tP`` in verification).  Measured on the 2-core build machine: [k]G with the fixed-base comb
table 0.6 ms, variable-base windowed [k]P 2.5 ms, [k]P with a cached per-key comb 0.6 ms, against 2.9 ms
for ``pysmx.SM2.kG``.

Secret scalars (a private key d, a signing nonce k) go through ``mul_g_secret`` / ``mul_point_secret``:
a Montgomery ladder over a fixed 257-bit scalar (k + n or k + 2n, chosen arithmetically), one addition
and one doubling per bit whatever the bit, the operands selected by a masked swap instead of a branch,
no table lookups indexed by secret digits and no early exit; the ladder's result and 1 + d in signing
are inverted by Fermat (``inverse_secret``), not by the extended Euclid whose step count follows its
input.  The fast comb/window methods above skip zero digits and stop at the scalar's length, so their
timing follows the scalar: they are used for public scalars only (verification, and the ephemeral k
of encryption, whose exposure would reveal one message rather than a key; see sm2.py).  What remains:
CPython's big-int arithmetic itself is not constant time (a multiplication's cost depends slightly on
operand size, and the exceptional branches of the addition formulas are reached only with probability
~2^-256), so this removes the large, scalar-dependent variations a remote or co-resident observer could
measure, not cache-level leakage; keys needing that belong in an HSM or a C implementation.
"""

from __future__ import annotations

from functools import lru_cache

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC  # == -3 mod P
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
G = (GX, GY)

Point = tuple[int, int]  # affine (x, y); None stands for the point at infinity
JPoint = tuple[int, int, int]  # Jacobian (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is infinity

_INF: JPoint = (1, 1, 0)
_WINDOW = 4  # bits per window: 64 windows x 15 points for the fixed-base tables


def is_on_curve(pt: Point | None) -> bool:
    if pt is None:
        return False
    x, y = pt
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x + A * x + B)) % P == 0


def _jdouble(pt: JPoint) -> JPoint:
    # dbl-2001-b for a = -3 (SM2's a is p - 3).
    X1, Y1, Z1 = pt
    if Z1 == 0 or Y1 == 0:
        return _INF
    delta = Z1 * Z1 % P
    gamma = Y1 * Y1 % P
    beta = X1 * gamma % P
    alpha = 3 * (X1 - delta) * (X1 + delta) % P
    X3 = (alpha * alpha - 8 * beta) % P
    Z3 = ((Y1 + Z1) ** 2 - gamma - delta) % P
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % P
    return (X3, Y3, Z3)


def _jadd_affine(pt: JPoint, x2: int, y2: int) -> JPoint:
    """Jacobian + affine (madd-2007-bl), handling the equal and inverse cases."""
    X1, Y1, Z1 = pt
    if Z1 == 0:
        return (x2, y2, 1)
    Z1Z1 = Z1 * Z1 % P
    U2 = x2 * Z1Z1 % P
    S2 = y2 * Z1 * Z1Z1 % P
    H = (U2 - X1) % P
    r = (S2 - Y1) % P
    if H == 0:
        if r == 0:
            return _jdouble(pt)
        return _INF
    HH = H * H % P
    I4 = 4 * HH % P
    J = H * I4 % P
    r2 = 2 * r % P
    V = X1 * I4 % P
    X3 = (r2 * r2 - J - 2 * V) % P
    Y3 = (r2 * (V - X3) - 2 * Y1 * J) % P
    Z3 = ((Z1 + H) ** 2 - Z1Z1 - HH) % P
    return (X3, Y3, Z3)


def _jadd(p1: JPoint, p2: JPoint) -> JPoint:
    """General Jacobian addition (add-2007-bl) with the special cases."""
    X1, Y1, Z1 = p1
    X2, Y2, Z2 = p2
    if Z1 == 0:
        return p2
    if Z2 == 0:
        return p1
    Z1Z1 = Z1 * Z1 % P
    Z2Z2 = Z2 * Z2 % P
    U1 = X1 * Z2Z2 % P
    U2 = X2 * Z1Z1 % P
    S1 = Y1 * Z2 * Z2Z2 % P
    S2 = Y2 * Z1 * Z1Z1 % P
    H = (U2 - U1) % P
    r = (S2 - S1) % P
    if H == 0:
        if r == 0:
            return _jdouble(p1)
        return _INF
    I = (2 * H) ** 2 % P  # noqa: E741 - the formula's name
    J = H * I % P
    r = 2 * r % P
    V = U1 * I % P
    X3 = (r * r - J - 2 * V) % P
    Y3 = (r * (V - X3) - 2 * S1 * J) % P
    Z3 = (((Z1 + Z2) ** 2 - Z1Z1 - Z2Z2) * H) % P
    return (X3, Y3, Z3)


def _to_affine(pt: JPoint) -> Point | None:
    X, Y, Z = pt
    if Z == 0:
        return None
    zi = pow(Z, -1, P)
    zi2 = zi * zi % P
    return (X * zi2 % P, Y * zi2 * zi % P)


def _batch_to_affine(pts: list[JPoint]) -> list[Point]:
    """Montgomery's trick: one inversion for the whole list (no point may be infinity)."""
    acc = [1] * (len(pts) + 1)
    for i, (_, _, z) in enumerate(pts):
        acc[i + 1] = acc[i] * z % P
    inv = pow(acc[-1], -1, P)
    out: list[Point] = [(0, 0)] * len(pts)
    for i in range(len(pts) - 1, -1, -1):
        X, Y, Z = pts[i]
        zi = inv * acc[i] % P
        inv = inv * Z % P
        zi2 = zi * zi % P
        out[i] = (X * zi2 % P, Y * zi2 * zi % P)
    return out


def _build_comb(base: Point) -> list[list[Point]]:
    """table[i][d-1] = d * 16^i * base for d in 1..15 (affine), so k*base is 64 mixed additions."""
    rows: list[list[JPoint]] = []
    cur: JPoint = (base[0], base[1], 1)
    for _ in range(256 // _WINDOW):
        row = [cur]
        for _d in range(2, 1 << _WINDOW):
            row.append(_jadd(row[-1], cur))
        rows.append(row)
        cur = _jadd(row[-1], cur)  # 16 * cur: the next window's base
    flat = [p for row in rows for p in row]
    aff = _batch_to_affine(flat)
    per = (1 << _WINDOW) - 1
    return [aff[i * per:(i + 1) * per] for i in range(len(rows))]


def _comb_mul(table: list[list[Point]], k: int) -> JPoint:
    acc: JPoint = _INF
    mask = (1 << _WINDOW) - 1
    i = 0
    while k:
        d = k & mask
        if d:
            x, y = table[i][d - 1]
            acc = _jadd_affine(acc, x, y)
        k >>= _WINDOW
        i += 1
    return acc


@lru_cache(maxsize=1)
def _g_table() -> list[list[Point]]:
    return _build_comb(G)


@lru_cache(maxsize=16)
def _point_table(pt: Point) -> list[list[Point]]:
    return _build_comb(pt)


_uses: dict[Point, int] = {}
_TABLE_AFTER = 4  # uses before a comb table is built: ~11 ms build vs ~2 ms saved per later use


def _table_if_reused(pt: Point) -> list[list[Point]] | None:
    """A comb table for points in repeated use (a regulator's key is used for every upload); one-off points
    (fresh test keys, C1 in decryption) go through the windowed method."""
    n = _uses.get(pt, 0)
    if n >= _TABLE_AFTER:
        return _point_table(pt)
    if len(_uses) > 1024:
        _uses.clear()
    _uses[pt] = n + 1
    return None


def _window_mul(pt: Point, k: int) -> JPoint:
    """Variable-base fixed-window (4-bit) multiplication."""
    x, y = pt
    base: JPoint = (x, y, 1)
    pre: list[JPoint] = [base]
    for _ in range(2, 16):
        pre.append(_jadd_affine(pre[-1], x, y))
    pre_aff = _batch_to_affine(pre)
    acc: JPoint = _INF
    top = (k.bit_length() + 3) // 4 * 4
    for shift in range(top - 4, -1, -4):
        if acc[2]:
            acc = _jdouble(_jdouble(_jdouble(_jdouble(acc))))
        d = (k >> shift) & 15
        if d:
            px, py = pre_aff[d - 1]
            acc = _jadd_affine(acc, px, py)
    return acc


def _mul_j(pt: Point, k: int, reuse: bool) -> JPoint:
    table = _table_if_reused(pt) if reuse else None
    return _comb_mul(table, k) if table is not None else _window_mul(pt, k)


def mul_g(k: int) -> Point | None:
    """k * G (None for the point at infinity)."""
    return _to_affine(_comb_mul(_g_table(), k % N))


def mul_point(pt: Point, k: int, reuse: bool = False) -> Point | None:
    """k * pt; reuse=True for long-lived public keys (a comb table is cached from the second use)."""
    return _to_affine(_mul_j(pt, k % N, reuse))


def mul_add(k1: int, k2: int, pt: Point) -> Point | None:
    """k1 * G + k2 * pt (signature verification)."""
    return _to_affine(_jadd(_comb_mul(_g_table(), k1 % N), _mul_j(pt, k2 % N, True)))


_LADDER_BITS = 257  # k + n or k + 2n always has exactly this many bits for 0 <= k < n


def _cswap(bit: int, a: JPoint, b: JPoint) -> tuple[JPoint, JPoint]:
    """(a, b) when bit is 0, (b, a) when it is 1, computed the same way for both."""
    mask = -bit  # 0 or ...111 (all ones)
    out_a, out_b = [], []
    for u, v in zip(a, b, strict=True):
        t = mask & (u ^ v)
        out_a.append(u ^ t)
        out_b.append(v ^ t)
    return (out_a[0], out_a[1], out_a[2]), (out_b[0], out_b[1], out_b[2])


def _fixed_length_scalar(k: int) -> int:
    """k + n, or k + 2n when k + n has only 256 bits: the same multiple of the point, 257 bits long."""
    k1 = k + N
    short = 1 - (k1 >> (_LADDER_BITS - 1))  # 1 when bit 256 of k + n is clear
    return k1 + short * N


def _ladder(pt: Point, k: int) -> JPoint:
    """Montgomery ladder: R1 - R0 = pt throughout; every bit costs one addition and one doubling."""
    scalar = _fixed_length_scalar(k % N)
    base: JPoint = (pt[0], pt[1], 1)
    r0, r1 = base, _jdouble(base)  # the top bit (256) is always 1
    for i in range(_LADDER_BITS - 2, -1, -1):
        bit = (scalar >> i) & 1
        r0, r1 = _cswap(bit, r0, r1)
        r0, r1 = _jdouble(r0), _jadd(r0, r1)
        r0, r1 = _cswap(bit, r0, r1)
    return r0


def inverse_secret(x: int, m: int) -> int:
    """x^-1 modulo the prime m for a secret x (1 + d in signing, a ladder result's Z, which depends on
    the scalar): Fermat's x^(m-2), whose squarings and multiplications follow the public exponent only.
    ``pow(x, -1, m)`` is an extended Euclid whose number of steps follows x (on the build machine 3 us for
    a 64-bit x, 14 us for a random one); it stays for public values."""
    return pow(x, m - 2, m)


def _to_affine_secret(pt: JPoint) -> Point | None:
    X, Y, Z = pt
    if Z == 0:
        return None
    zi = inverse_secret(Z, P)
    zi2 = zi * zi % P
    return (X * zi2 % P, Y * zi2 * zi % P)


def mul_g_secret(k: int) -> Point | None:
    """k * G for a secret k (private key, signing nonce): uniform operations, see the module notes."""
    return _to_affine_secret(_ladder(G, k))


def mul_point_secret(pt: Point, k: int) -> Point | None:
    """k * pt for a secret k (decryption with the private key)."""
    return _to_affine_secret(_ladder(pt, k))


def decompress(x: int, odd: bool) -> Point:
    """y from x and its parity; p = 3 mod 4 so sqrt is one pow.  ValueError if x is not on the curve."""
    if not 0 <= x < P:
        raise ValueError("x out of range")
    rhs = (x * x * x + A * x + B) % P
    y = pow(rhs, (P + 1) // 4, P)
    if y * y % P != rhs:
        raise ValueError("x is not on the SM2 curve")
    if (y & 1) != odd:
        y = P - y
    return (x, y)
