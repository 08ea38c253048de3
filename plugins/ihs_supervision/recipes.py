"""Sign recipes as data: how the ``sign`` header could be computed, since the document's section 4
(签名算法) is missing from our copy.

A recipe is our assumption, not the document's: a digest (``core.crypto.digest``: MD5, SHA-1,
SHA-256, SM3, HMAC-SHA256, HMAC-SM3) over a message made of the request's ``appid``, ``service``,
``randomstr``, ``uptime``, ``data`` and the key, laid out either

* ``concat``: the values in a chosen order joined by a separator (the key is one of the ordered
  fields; for an HMAC it may also be left out, being the HMAC key), or
* ``pairs``: ``k=v`` pairs sorted by name and joined by ``&``, with the key appended as ``&key=…``,
  appended or prepended bare, sorted in among the others as ``key=…``, or (HMAC only) not at all,

and the digest written as lower hex, upper hex or Base64. ``find_recipes`` tries every recipe
against one worked example (as ``core.crypto.detect`` does for SM2/SM4 profiles).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from core.crypto import DIGESTS, digest, is_keyed

SIGNED_FIELDS = ("appid", "service", "randomstr", "uptime", "data")
ORDER_NAMES = SIGNED_FIELDS + ("key",)
LAYOUTS = ("concat", "pairs")
KEY_PLACEMENTS = ("pair_last", "suffix", "prefix", "sorted", "none")
OUTPUTS = ("hex", "HEX", "base64")
SEPARATORS = ("", "&", "|", ",")  # tried by the search; any separator may be configured
DEFAULT_ORDER = ("appid", "service", "randomstr", "uptime", "data", "key")

KEY_PLACEMENT_LABELS = {
    "pair_last": "末尾追加 &key=密钥", "suffix": "末尾直接追加密钥", "prefix": "开头直接加密钥",
    "sorted": "key=密钥 参与排序", "none": "不拼接密钥（仅 HMAC）",
}
OUTPUT_LABELS = {"hex": "小写十六进制", "HEX": "大写十六进制", "base64": "Base64"}


class RecipeError(ValueError):
    """A recipe that cannot sign (unknown digest, no key anywhere, a field twice...)."""


@dataclass(frozen=True)
class SignRecipe:
    digest: str = "SHA-256"
    layout: str = "concat"
    order: tuple[str, ...] = DEFAULT_ORDER
    separator: str = ""
    key_placement: str = "pair_last"
    output: str = "hex"

    def check(self) -> SignRecipe:
        if self.digest not in DIGESTS:
            raise RecipeError(f"未知的摘要算法 {self.digest!r}（可选：{'、'.join(DIGESTS)}）")
        if self.layout not in LAYOUTS:
            raise RecipeError(f"未知的拼接方式 {self.layout!r}")
        if self.output not in OUTPUTS:
            raise RecipeError(f"未知的输出编码 {self.output!r}")
        if self.layout == "concat":
            unknown = [n for n in self.order if n not in ORDER_NAMES]
            if unknown:
                raise RecipeError(f"拼接顺序含未知字段 {', '.join(unknown)}（可用：{', '.join(ORDER_NAMES)}）")
            if len(set(self.order)) != len(self.order) or not self.order:
                raise RecipeError("拼接顺序不能为空，字段也不能重复")
            if "key" not in self.order and not is_keyed(self.digest):
                raise RecipeError("非 HMAC 摘要的拼接顺序必须包含 key（否则签名不含密钥）")
        else:
            if self.key_placement not in KEY_PLACEMENTS:
                raise RecipeError(f"未知的密钥位置 {self.key_placement!r}")
            if self.key_placement == "none" and not is_keyed(self.digest):
                raise RecipeError("只有 HMAC 摘要可以不拼接密钥")
        return self

    @property
    def id(self) -> str:
        """Canonical text of the recipe: shown, compared and fingerprinted."""
        if self.layout == "concat":
            shape = f"concat[{','.join(self.order)}]sep={self.separator!r}"
        else:
            shape = f"pairs[sorted]key={self.key_placement}"
        return f"{self.digest};{shape};{self.output}"

    def describe(self) -> str:
        if self.layout == "concat":
            sep = f"以 {self.separator!r} 连接" if self.separator else "直接连接"
            shape = f"按 {' + '.join(self.order)} 顺序{sep}"
        else:
            shape = f"按字段名排序的 k=v&… ，{KEY_PLACEMENT_LABELS[self.key_placement]}"
        return f"{self.digest}（{shape}），输出{OUTPUT_LABELS[self.output]}"

    def message(self, values: Mapping[str, str], key: str) -> bytes:
        """The bytes that are digested, from the request's values (UTF-8)."""
        if self.layout == "concat":
            parts = [key if name == "key" else str(values.get(name, "")) for name in self.order]
            return self.separator.join(parts).encode("utf-8")
        pairs = {name: str(values.get(name, "")) for name in SIGNED_FIELDS}
        if self.key_placement == "sorted":
            pairs["key"] = key
        text = "&".join(f"{name}={pairs[name]}" for name in sorted(pairs))
        if self.key_placement == "pair_last":
            text += f"&key={key}"
        elif self.key_placement == "suffix":
            text += key
        elif self.key_placement == "prefix":
            text = key + text
        return text.encode("utf-8")

    def raw(self, values: Mapping[str, str], key: str) -> bytes:
        message = self.message(values, key)
        return digest(self.digest, message, key.encode("utf-8") if is_keyed(self.digest) else None)

    def sign(self, values: Mapping[str, str], key: str) -> str:
        """The ``sign`` header for these values."""
        return encode(self.raw(values, key), self.output)

    def settings(self) -> dict[str, str]:
        """The regulator settings that select this recipe."""
        return {"sign_digest": self.digest, "sign_layout": self.layout, "sign_order": ",".join(self.order),
                "sign_separator": self.separator, "sign_key_placement": self.key_placement,
                "sign_output": self.output}


def encode(raw: bytes, output: str) -> str:
    if output == "hex":
        return raw.hex()
    if output == "HEX":
        return raw.hex().upper()
    return base64.b64encode(raw).decode("ascii")


def from_settings(values: Mapping[str, str]) -> SignRecipe | None:
    """The configured recipe, or None while none is chosen (the default: nothing is assumed)."""
    name = (values.get("sign_digest") or "").strip()
    if not name:
        return None
    order = tuple(p.strip() for p in (values.get("sign_order") or ",".join(DEFAULT_ORDER)).split(",") if p.strip())
    recipe = SignRecipe(
        digest=name, layout=(values.get("sign_layout") or "concat").strip(), order=order,
        separator=values.get("sign_separator") or "",
        key_placement=(values.get("sign_key_placement") or "pair_last").strip(),
        output=(values.get("sign_output") or "hex").strip(),
    )
    return recipe.check()


def _decodings(expected: str) -> list[tuple[str, bytes]]:
    """(output, raw bytes) the expected sign could be written as."""
    text = expected.strip()
    found: list[tuple[str, bytes]] = []
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
        if not re.search(r"[A-F]", text):
            found.append(("hex", bytes.fromhex(text)))
        if not re.search(r"[a-f]", text):
            found.append(("HEX", bytes.fromhex(text)))
    try:
        raw = base64.b64decode(text, validate=True)
        if raw and encode(raw, "base64") == text:
            found.append(("base64", raw))
    except (binascii.Error, ValueError):
        pass
    return found


def candidates() -> Iterator[SignRecipe]:
    """Every recipe the search tries (outputs are added by the search from the example's shape)."""
    for name in DIGESTS:
        orders: list[tuple[str, ...]] = list(itertools.permutations(ORDER_NAMES))
        if is_keyed(name):
            orders += list(itertools.permutations(SIGNED_FIELDS))
        for order in orders:
            for separator in SEPARATORS:
                yield SignRecipe(digest=name, layout="concat", order=order, separator=separator)
        for placement in KEY_PLACEMENTS:
            if placement == "none" and not is_keyed(name):
                continue
            yield SignRecipe(digest=name, layout="pairs", key_placement=placement)


def find_recipes(values: Mapping[str, str], key: str, expected_sign: str) -> list[SignRecipe]:
    """Every recipe that turns the example's values and key into its expected sign."""
    decodings = _decodings(expected_sign)
    if not decodings:
        return []
    lengths = {len(raw) for _, raw in decodings}
    found: list[SignRecipe] = []
    for recipe in candidates():
        if _digest_size(recipe.digest) not in lengths:
            continue
        raw = recipe.raw(values, key)
        for output, wanted in decodings:
            if raw == wanted:
                found.append(replace(recipe, output=output))
    return found


def _digest_size(name: str) -> int:
    return {"MD5": 16, "SHA-1": 20}.get(name, 32)
