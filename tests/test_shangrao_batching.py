"""Batches are cut by the size of the SM2-encrypted ``data`` (at most 50,000 characters), computed
exactly from the plaintext length and checked against real encryption."""

from __future__ import annotations

import pytest
from test_shangrao_support import fee_row

from core.crypto import SM2Profile, generate_sm2_keypair, sm2_decrypt, sm2_encrypt
from plugins.shangrao_insurance import common

PROFILES = [
    SM2Profile(),
    SM2Profile(c1_prefix=False),
    SM2Profile(order="C1C2C3", output="HEX"),
    SM2Profile(output="base64"),
    SM2Profile(c1_prefix=False, output="base64"),
]


@pytest.fixture(scope="module")
def keys():
    return generate_sm2_keypair()


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.describe())
@pytest.mark.parametrize("size", [1, 2, 3, 100, 24903, 24904])
def test_the_computed_ciphertext_length_is_the_real_one(keys, profile, size):
    _, public = keys
    ciphertext = sm2_encrypt(b"x" * size, public, profile)
    assert len(ciphertext) == common.ciphertext_chars(size, profile)


def test_asn1_length_is_an_upper_bound(keys):
    private, public = keys
    profile = SM2Profile(format="asn1")
    for size in (1, 127, 128, 300, 20000):
        ciphertext = sm2_encrypt(b"y" * size, public, profile)
        assert len(ciphertext) <= common.ciphertext_chars(size, profile)
        assert sm2_decrypt(ciphertext, private, profile) == b"y" * size


def test_default_profile_fits_24903_bytes_of_plaintext_in_50000_characters():
    profile = SM2Profile()  # C1C3C2, 04, lower hex: 2 * (65 + 32 + n)
    assert common.max_plaintext_bytes(50000, profile) == 24903
    assert common.ciphertext_chars(24903, profile) == 50000
    assert common.ciphertext_chars(24904, profile) == 50002
    assert common.max_plaintext_bytes(50000, SM2Profile(output="base64")) == 37403


def test_batches_are_cut_by_encrypted_size_and_each_fits_exactly(keys):
    _, public = keys
    profile = SM2Profile()
    rows = [fee_row(n, HILIST_NAME="阿莫西林胶囊" * (n % 7 + 1)) for n in range(400)]
    batches, oversized = common.cut_batches(rows, profile, 50000)
    assert not oversized
    assert [r for b in batches for r in b.rows] == rows  # order kept, nothing lost or doubled
    assert len(batches) > 1
    for index, batch in enumerate(batches):
        plaintext = common.encode_rows(batch.rows)
        assert len(plaintext) == batch.plaintext_bytes
        ciphertext = sm2_encrypt(plaintext, public, profile)
        assert len(ciphertext) == common.ciphertext_chars(len(plaintext), profile) <= 50000
        if index + 1 < len(batches):  # greedy: the next row would not have fitted
            bigger = common.encode_rows(batch.rows + [batches[index + 1].rows[0]])
            assert common.ciphertext_chars(len(bigger), profile) > 50000


def test_a_smaller_max_data_chars_gives_smaller_batches(keys):
    _, public = keys
    profile = SM2Profile()
    rows = [fee_row(n) for n in range(30)]
    big, _ = common.cut_batches(rows, profile, 50000)
    small, _ = common.cut_batches(rows, profile, 5000)
    assert len(big) == 1 and len(small) > 5
    for batch in small:
        assert len(sm2_encrypt(common.encode_rows(batch.rows), public, profile)) <= 5000


def test_a_row_too_big_alone_is_held_out_and_the_others_go_on():
    profile = SM2Profile()
    rows = [fee_row(0), fee_row(1, MEDINS_LIST_NAME="药" * 9000), fee_row(2)]
    batches, oversized = common.cut_batches(rows, profile, 50000)
    assert [r["BKKP_SN"] for b in batches for r in b.rows] == ["BK0000000000", "BK0000000002"]
    [big] = oversized
    assert big.index == 1 and big.ciphertext_chars > 50000


def test_msgid_is_the_institution_code_and_24_random_characters():
    ids = {common.new_msgid("H36110200001") for _ in range(200)}
    assert len(ids) == 200
    for msgid in ids:
        assert len(msgid) == 36 and msgid.startswith("H36110200001") and msgid[12:].isalnum()
