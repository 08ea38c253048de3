"""Benchmark core.crypto against gmssl 3.2.2 in the same run: ``python bench/bench_crypto.py``.

Prints ops/s, MB/s and the median per operation.  gmssl is pure Python and very slow on big inputs, so it
gets fewer iterations (the median of few runs is still representative: its time is linear in the size).
SM2 encryption uses one long-lived public key, as in production (one key per regulator).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmssl import sm2 as gm_sm2  # noqa: E402  (test peer, for comparison only)
from gmssl import sm3 as gm_sm3  # noqa: E402
from gmssl import sm4 as gm_sm4  # noqa: E402

import core.crypto as cc  # noqa: E402

KIB = 1024
SM4_KEY = "0123456789abcdeffedcba9876543210"


def measure(fn: Callable[[], object], iterations: int, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gm_sm4_ecb(data: bytes) -> bytes:
    c = gm_sm4.CryptSM4(padding_mode=gm_sm4.PKCS7)
    c.set_key(bytes.fromhex(SM4_KEY), gm_sm4.SM4_ENCRYPT)
    return c.crypt_ecb(data)


def gm_peer(d: str, xy: str) -> gm_sm2.CryptSM2:
    crypt = gm_sm2.CryptSM2(private_key=d, public_key=xy, mode=1)
    crypt.public_key = xy  # its constructor lstrip("04")s any key starting with 04, even a bare X||Y
    return crypt


def gm_encrypt(crypt: gm_sm2.CryptSM2, data: bytes) -> bytes:
    ct = None
    while ct is None:
        ct = crypt.encrypt(data)
    return ct


def main() -> None:
    d, p = cc.generate_sm2_keypair()
    xy = cc.normalize_public_key(p)
    gm = gm_peer(d, xy)
    sm4p = cc.SM4Profile(mode="ECB", padding="pkcs7", key_format="hex", output="hex")
    sm2p = cc.SM2Profile(order="C1C3C2", c1_prefix=False, format="raw", output="hex")
    signp = cc.SM2SignProfile(encoding="raw")
    msg = b"regulator upload signature payload"
    ours_sig = cc.sm2_sign(msg, d, signp)
    gm_sig = gm.sign_with_sm3(msg)

    keys = [cc.generate_sm2_keypair() for _ in range(260)]
    fresh = iter(keys)  # a different key on every call: no per-key table (worst case, first uploads)
    fresh_xy = iter(cc.normalize_public_key(k[1]) for k in keys[:20])
    blobs = {n: os.urandom(n) for n in (KIB, 64 * KIB, 1024 * KIB, 24_000, 50_000)}
    # (name, size in bytes or 0, baosong fn, baosong iterations, gmssl fn, gmssl iterations)
    cases = [
        ("SM4-ECB 1 KiB", KIB, lambda: cc.sm4_encrypt(blobs[KIB], SM4_KEY, sm4p), 2000,
         lambda: gm_sm4_ecb(blobs[KIB]), 20),
        ("SM4-ECB 64 KiB", 64 * KIB, lambda: cc.sm4_encrypt(blobs[64 * KIB], SM4_KEY, sm4p), 300,
         lambda: gm_sm4_ecb(blobs[64 * KIB]), 2),
        ("SM4-ECB 1 MiB", 1024 * KIB, lambda: cc.sm4_encrypt(blobs[1024 * KIB], SM4_KEY, sm4p), 30,
         lambda: gm_sm4_ecb(blobs[1024 * KIB]), 1),
        ("SM3 1 MiB", 1024 * KIB, lambda: cc.sm3_digest(blobs[1024 * KIB]), 50,
         lambda: gm_sm3.sm3_hash(list(blobs[1024 * KIB])), 1),
        ("SM2 encrypt 1 KiB", KIB, lambda: cc.sm2_encrypt(blobs[KIB], p, sm2p), 300,
         lambda: gm_encrypt(gm, blobs[KIB]), 10),
        ("SM2 encrypt 24 KB", 24_000, lambda: cc.sm2_encrypt(blobs[24_000], p, sm2p), 100,
         lambda: gm_encrypt(gm, blobs[24_000]), 3),
        ("SM2 encrypt 50 KB", 50_000, lambda: cc.sm2_encrypt(blobs[50_000], p, sm2p), 60,
         lambda: gm_encrypt(gm, blobs[50_000]), 2),
        ("SM2 enc 1 KiB new key", KIB, lambda: cc.sm2_encrypt(blobs[KIB], next(fresh)[1], sm2p), 200,
         lambda: gm_encrypt(gm_peer(d, next(fresh_xy)), blobs[KIB]),
         10),
        ("SM2 decrypt 24 KB", 24_000, None, 100, None, 2),
        ("SM2 sign", 0, lambda: cc.sm2_sign(msg, d, signp), 500, lambda: gm.sign_with_sm3(msg), 20),
        ("SM2 verify", 0, lambda: cc.sm2_verify(msg, ours_sig, p, signp),
         300, lambda: gm.verify_with_sm3(gm_sig, msg), 20),
    ]
    ct24 = cc.sm2_encrypt(blobs[24_000], p, sm2p)
    gm_ct24 = gm_encrypt(gm, blobs[24_000])
    cases[8] = (cases[8][0], 24_000, lambda: cc.sm2_decrypt(ct24, d, sm2p), 100,
                lambda: gm.decrypt(gm_ct24), 2)

    head = f"{'operation':<20}{'Baosong ops/s':>15}{'MB/s':>9}{'median ms':>11}   " \
           f"{'gmssl ops/s':>12}{'MB/s':>9}{'median ms':>11}{'speed-up':>10}"
    print(f"core.crypto vs gmssl 3.2.2 - Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(head)
    print("-" * len(head))
    started = time.perf_counter()
    for name, size, ours, n_ours, theirs, n_theirs in cases:
        t_ours = measure(ours, n_ours, warmup=5)
        t_gm = measure(theirs, n_theirs, warmup=0 if size >= 24_000 else 1)

        def mbs(t: float, size: int = size) -> str:
            return f"{size / t / 1e6:9.2f}" if size else f"{'':>9}"

        print(f"{name:<20}{1 / t_ours:15.1f}{mbs(t_ours)}{t_ours * 1e3:11.3f}   "
              f"{1 / t_gm:12.2f}{mbs(t_gm)}{t_gm * 1e3:11.1f}{t_gm / t_ours:9.0f}x", flush=True)
    print(f"\n(total {time.perf_counter() - started:.0f} s; targets: SM2 encrypt 24 KB <= 20 ms, "
          "SM2 sign <= 5 ms median)")


if __name__ == "__main__":
    main()
