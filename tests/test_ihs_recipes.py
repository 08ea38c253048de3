"""Digests by name (known answers from the standards, HMAC checked against independent peers) and
the sign recipes built on them: messages, outputs, settings round trip and the recipe search."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from gmssl import func as gm_func
from gmssl import sm3 as gm_sm3

from core.crypto import DIGESTS, CryptoError, digest
from plugins.ihs_supervision import recipes
from plugins.ihs_supervision.recipes import RecipeError, SignRecipe, find_recipes, from_settings

# GB/T 32905-2016 Appendix A: "abc" and the 64-byte "abcd" * 16.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
# RFC 4231 test case 2 (HMAC-SHA256, key "Jefe").
RFC4231_2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def gmssl_sm3(data: bytes) -> bytes:
    return bytes.fromhex(gm_sm3.sm3_hash(gm_func.bytes_to_list(data)))


def rfc2104_with_gmssl_sm3(key: bytes, message: bytes) -> bytes:
    """HMAC built by hand (RFC 2104, 64-byte block) over gmssl's independent SM3."""
    if len(key) > 64:
        key = gmssl_sm3(key)
    key = key.ljust(64, b"\0")
    inner = gmssl_sm3(bytes(b ^ 0x36 for b in key) + message)
    return gmssl_sm3(bytes(b ^ 0x5C for b in key) + inner)


def test_digests_give_the_standards_known_answers():
    assert digest("SM3", b"abc").hex() == SM3_ABC
    assert digest("SM3", b"abcd" * 16).hex() == SM3_ABCD16
    assert digest("MD5", b"abc").hex() == "900150983cd24fb0d6963f7d28e17f72"
    assert digest("SHA-1", b"abc").hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert digest("SHA-256", b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest("HMAC-SHA256", b"what do ya want for nothing?", b"Jefe").hex() == RFC4231_2


@pytest.mark.parametrize("key", [b"k", b"Jefe", b"x" * 64, b"y" * 100], ids=["short", "jefe", "block", "long"])
def test_hmac_sm3_matches_rfc2104_over_an_independent_sm3(key):
    message = b"appid=a&data=[]&key=secret"
    assert gmssl_sm3(b"abc").hex() == SM3_ABC  # the peer itself is right
    assert digest("HMAC-SM3", message, key) == rfc2104_with_gmssl_sm3(key, message)


def test_hmac_sha256_matches_the_standard_library():
    assert digest("HMAC-SHA256", b"m", b"k") == hmac.new(b"k", b"m", hashlib.sha256).digest()


def test_keyed_digests_need_a_key_and_unknown_names_are_refused():
    with pytest.raises(CryptoError):
        digest("HMAC-SM3", b"m")
    with pytest.raises(CryptoError, match="未知的摘要算法"):
        digest("SHA-512", b"m")


VALUES = {"appid": "APP1", "service": "A1000", "randomstr": "r" * 32, "uptime": "2019-10-10 21:10:10",
          "data": '[{"hospId":"H1"}]'}


def test_concat_recipe_signs_the_ordered_values_with_the_key():
    recipe = SignRecipe(digest="MD5", order=("appid", "service", "randomstr", "uptime", "data", "key"), separator="")
    message = b"APP1A1000" + b"r" * 32 + b'2019-10-10 21:10:10[{"hospId":"H1"}]secret'
    assert recipe.message(VALUES, "secret") == message
    assert recipe.sign(VALUES, "secret") == hashlib.md5(message).hexdigest()
    upper = SignRecipe(digest="MD5", output="HEX")
    assert upper.sign(VALUES, "secret") == upper.sign(VALUES, "secret").upper()


def test_pairs_recipe_sorts_names_and_places_the_key():
    base = "appid=APP1&data=[{\"hospId\":\"H1\"}]&randomstr=" + "r" * 32 + "&service=A1000&uptime=2019-10-10 21:10:10"
    assert SignRecipe(layout="pairs", key_placement="pair_last").message(VALUES, "K") == (base + "&key=K").encode()
    assert SignRecipe(layout="pairs", key_placement="suffix").message(VALUES, "K") == (base + "K").encode()
    assert SignRecipe(layout="pairs", key_placement="prefix").message(VALUES, "K") == ("K" + base).encode()
    sorted_in = SignRecipe(layout="pairs", key_placement="sorted").message(VALUES, "K").decode()
    assert sorted_in.index("data=") < sorted_in.index("key=K") < sorted_in.index("randomstr=")
    hmac_only = SignRecipe(digest="HMAC-SHA256", layout="pairs", key_placement="none", output="base64")
    assert hmac_only.sign(VALUES, "K") == base64.b64encode(
        hmac.new(b"K", base.encode(), hashlib.sha256).digest()).decode()


@pytest.mark.parametrize("recipe, reason", [
    (SignRecipe(digest="SHA-256", order=("appid", "data")), "必须包含 key"),
    (SignRecipe(order=("appid", "appid", "key")), "不能重复"),
    (SignRecipe(order=("appid", "token", "key")), "未知字段"),
    (SignRecipe(layout="pairs", key_placement="none"), "只有 HMAC"),
    (SignRecipe(digest="CRC32"), "未知的摘要算法"),
])
def test_recipes_that_cannot_sign_safely_are_refused(recipe, reason):
    with pytest.raises(RecipeError, match=reason):
        recipe.check()


def test_recipes_round_trip_through_settings_and_no_digest_means_no_recipe():
    recipe = SignRecipe(digest="HMAC-SM3", order=("service", "data", "uptime"), separator="|", output="base64")
    assert from_settings(recipe.settings()) == recipe
    assert from_settings({"sign_digest": ""}) is None


@pytest.mark.parametrize("recipe", [
    SignRecipe(digest="SM3", layout="pairs", key_placement="pair_last", output="HEX"),
    SignRecipe(digest="MD5", order=("key", "appid", "randomstr", "service", "uptime", "data"), separator="&"),
    SignRecipe(digest="HMAC-SM3", order=("appid", "service", "randomstr", "uptime", "data"), output="base64"),
    SignRecipe(digest="SHA-1", order=("data", "uptime", "randomstr", "service", "appid", "key"), separator=","),
], ids=lambda r: r.id)
def test_the_search_finds_the_recipe_that_made_an_example(recipe):
    expected = recipe.sign(VALUES, "vendor-key")
    found = find_recipes(VALUES, "vendor-key", expected)
    assert recipe in found
    assert all(r.sign(VALUES, "vendor-key") == expected for r in found)


def test_the_search_finds_nothing_for_a_sign_no_recipe_makes():
    assert find_recipes(VALUES, "vendor-key", "ab" * 32) == []
    assert find_recipes(VALUES, "vendor-key", "not a sign!") == []


def test_every_digest_is_searched():
    assert {c.digest for c in recipes.candidates()} == set(DIGESTS)
