"""Data signature (cainfo / signtype) with known answers and an independent peer (gmssl), the sandbox
verifying it; the constant-operation ladder for SM2 private-key operations; 1309 and 5205 with cited
field tables, the 1309 download previewed before it is applied."""

from __future__ import annotations

import json
import secrets

import pytest
import sqlalchemy as sa

from core.db import db
from tests.test_twopath import Platform, _configure, new_filing, person, platform, submit_now, tp_registry  # noqa: F401
from tests.test_twopath_web import identify
from tests.test_web_support import login

NODE = {"data": {"psn_no": "360000000000001000", "begndate": "2025-03-01"},
        "twopathdruglist": [{"med_list_codg": "XL01XC03", "med_list_name": "曲妥珠单抗注射液"}]}
CANONICAL = ('{"data":{"begndate":"2025-03-01","psn_no":"360000000000001000"},"twopathdruglist":'
             '[{"med_list_codg":"XL01XC03","med_list_name":"曲妥珠单抗注射液"}]}')
SM3_OF_CANONICAL = "edb2a1b3748e2f14150357da5e34afc8ffe73761dd6562d48d2afbac3a244b2c"
# SM2 over CANONICAL with the GB/T 32918 example key and nonce (core.crypto.selftest STD_D / STD_K), r||s:
SM2_OF_CANONICAL = ("b674b92596cf779dbe2556c1ad3d0a854c4ed54a12c5523fa97bd6739a74e67f"
                    "dfc93a84001bb23430268afe9266e66abee3d9f48ace6caac8a598aaa548fc6f")


# --- the signer -------------------------------------------------------------------------------------------

def test_the_signed_text_is_the_input_node_as_canonical_json():
    from plugins.twopath import signature

    assert signature.canonical_input(NODE).decode("utf-8") == CANONICAL
    reordered = {"twopathdruglist": NODE["twopathdruglist"], "data": dict(reversed(list(NODE["data"].items())))}
    assert signature.canonical_input(reordered) == signature.canonical_input(NODE)


def test_signing_is_off_by_default_and_sm3_has_a_known_answer():
    from gmssl import func, sm3

    from plugins.twopath import signature

    assert signature.sign_envelope(NODE, {}) == ("", "")
    assert signature.sign_envelope(NODE, {"signtype": "SM3"}) == (SM3_OF_CANONICAL, "SM3")
    assert sm3.sm3_hash(func.bytes_to_list(CANONICAL.encode("utf-8"))) == SM3_OF_CANONICAL  # independent peer


def test_sm2_signature_known_answer_and_an_independent_peer_verifies_it():
    from gmssl import sm2 as gmssl_sm2

    from core.crypto import ec, sm2, sm3
    from core.crypto.selftest import STD_D, STD_K
    from plugins.twopath import signature

    pub = ec.mul_g(STD_D)
    e = int.from_bytes(sm3.sm3_digest(sm2.sm2_z(b"1234567812345678", pub) + CANONICAL.encode("utf-8")), "big")
    r, s = sm2._sign_e(e, STD_D, STD_K)
    assert f"{r:064x}{s:064x}" == SM2_OF_CANONICAL

    settings = {"signtype": "SM2", "sign_private_key": f"{STD_D:064x}", "sign_encoding": "raw", "sign_output": "hex"}
    cainfo, signtype = signature.sign_envelope(NODE, settings)
    assert signtype == "SM2" and len(cainfo) == 128
    peer = gmssl_sm2.CryptSM2(private_key=f"{STD_D:064x}", public_key=f"{pub[0]:064x}{pub[1]:064x}")
    assert peer.verify_with_sm3(cainfo, CANONICAL.encode("utf-8"))
    config = {"signtype": "SM2", "sign_public_key": f"04{pub[0]:064x}{pub[1]:064x}", "sign_encoding": "raw"}
    assert signature.verify_envelope({"signtype": "SM2", "cainfo": cainfo, "input": NODE}, config) is None
    tampered = {"signtype": "SM2", "cainfo": cainfo, "input": {**NODE, "data": {"psn_no": "X"}}}
    assert "验证失败" in signature.verify_envelope(tampered, config)
    with pytest.raises(Exception, match="签名私钥"):
        signature.sign_envelope(NODE, {"signtype": "SM2"})


@pytest.fixture
def signing_platform(tp_registry, app, serve):  # noqa: F811
    """The sandbox requiring SM2 signatures with the hospital's public key."""
    from core.crypto import generate_sm2_keypair
    from plugins.twopath import sandbox

    private, public = generate_sm2_keypair()
    client_settings, config = sandbox.demo_config("")
    config.update(review_delay_seconds=60, sign_ttl_seconds=3600, reject_every=0, signtype="SM2",
                  sign_public_key=public)
    url = serve(sandbox.make_app(config))
    _configure(client_settings["twopath"], base_url=url, signtype="SM2", sign_private_key=private)
    return Platform(url, config)


def test_with_signatures_on_every_envelope_is_signed_and_the_sandbox_verifies_it(signing_platform):
    from core.models import Attempt
    from plugins.twopath.models import Filing, FilingStatus

    filing = new_filing("twopath", 0)
    upload = submit_now(filing)
    assert upload.status == "succeeded"
    db.session.expire_all()
    assert db.session.get(Filing, filing.id).status == FilingStatus.PENDING_REVIEW
    attempt = db.session.execute(sa.select(Attempt).filter_by(upload_id=upload.id)).scalar_one()
    envelope = json.loads(attempt.plaintext)
    assert envelope["signtype"] == "SM2" and len(envelope["cainfo"]) > 64

    from core.settings import save_regulator_setting

    save_regulator_setting("twopath", "signtype", "SM3")  # the platform expects SM2: refused, said why
    db.session.commit()
    from plugins.twopath import filings

    with pytest.raises(filings.FilingError, match="签名类型应为 SM2"):
        filings.lookup_person("02", person(1)["certno"], actor="tester", opter="op1", opter_name="经办甲")


# --- the ladder ---------------------------------------------------------------------------------------------

def test_the_ladder_agrees_with_the_fast_methods_on_edge_and_random_scalars():
    from core.crypto import ec

    scalars = [1, 2, 3, 2**128, 2**255, ec.N - 2, ec.N - 1, ec.N - 2**200, secrets.randbelow(ec.N)]
    point = ec.mul_g(secrets.randbelow(ec.N - 1) + 1)
    for k in scalars:
        assert ec.mul_g_secret(k) == ec.mul_g(k), k
        assert ec.mul_point_secret(point, k) == ec.mul_point(point, k), k
    assert ec.mul_g_secret(0) is None and ec.mul_g_secret(ec.N) is None


def test_the_ladder_does_the_same_operations_whatever_the_scalar(monkeypatch):
    """Secret scalars of every length and weight cost the same sequence of additions and doublings (the
    fast comb's cost follows the scalar's digits: the counts differ there)."""
    from core.crypto import ec

    calls: list[str] = []
    real_add, real_double = ec._jadd, ec._jdouble
    monkeypatch.setattr(ec, "_jadd", lambda a, b: (calls.append("a"), real_add(a, b))[1])
    monkeypatch.setattr(ec, "_jdouble", lambda a: (calls.append("d"), real_double(a))[1])

    def trace(k: int) -> str:
        calls.clear()
        ec.mul_g_secret(k)
        return "".join(calls)

    traces = {trace(k) for k in (1, 2**255 + 1, ec.N - 1, int("5" * 64, 16), 0xFFFF)}
    assert len(traces) == 1 and len(next(iter(traces))) == 2 * 256 + 1


def test_secret_values_are_inverted_by_fermat_never_by_euclid(monkeypatch):
    """pow(x, -1, m) is an extended Euclid whose step count follows x: in signing and decryption the
    private key's 1 + d and the ladder's Z (which follows the nonce or d) are inverted by x^(m-2)."""
    import builtins

    from core.crypto import (
        SM2Profile,
        SM2SignProfile,
        ec,
        generate_sm2_keypair,
        sm2,
        sm2_decrypt,
        sm2_encrypt,
        sm2_sign,
        sm2_verify,
    )

    private, public = generate_sm2_keypair()
    profile = SM2Profile()
    ciphertext = sm2_encrypt(b"5205", public, profile)
    exponents: list[int] = []

    def traced(base, exp, mod=None):
        exponents.append(exp)
        return builtins.pow(base, exp, mod)

    monkeypatch.setattr(ec, "pow", traced, raising=False)
    monkeypatch.setattr(sm2, "pow", traced, raising=False)
    signature = sm2_sign(CANONICAL.encode("utf-8"), private, SM2SignProfile())
    assert sm2_decrypt(ciphertext, private, profile) == b"5205"
    assert exponents and -1 not in exponents, sorted(set(exponents))
    monkeypatch.undo()
    assert sm2_verify(CANONICAL.encode("utf-8"), signature, public, SM2SignProfile())
    for x in (1, 2, 2**64 + 1, ec.N - 1, secrets.randbelow(ec.N - 1) + 1):
        assert ec.inverse_secret(x, ec.N) * x % ec.N == 1 and ec.inverse_secret(x, ec.P) * x % ec.P == 1


# --- 1309 and 5205: cited field tables, in the sandbox --------------------------------------------------------

@pytest.mark.parametrize("infno", ["1309", "5205", "9002"])
def test_every_field_of_the_new_interfaces_cites_its_source(infno):
    from plugins.twopath import protocol

    raw = json.loads((protocol.SCHEMAS / f"{infno}.json").read_text("utf-8"))
    assert raw["source"]
    for field in raw["fields"]:
        assert "来源" in field["note"], field["name"]
    for field in raw["interface"]["output"]["fields"]:
        assert field["source"], field["name"]
    assert protocol.schema(infno).fields  # loads through core.schema


def test_1309_downloads_the_catalogue_and_shows_the_changes_before_applying(platform, app):  # noqa: F811
    from plugins.twopath.models import Disease

    db.session.add_all([Disease(code="M03900", name="原发性高血压"), Disease(code="M09999", name="本地病种")])
    db.session.commit()
    web = login(app, "operator", "wang")
    identify("wang")
    preview = web.post("/twopath/catalogue/diseases/download", {"ver": "0"}).get_data(as_text=True)
    assert "新增 7" in preview and "原发性高血压 → 高血压" in preview
    assert db.session.execute(sa.select(sa.func.count()).select_from(Disease)).scalar() == 2  # nothing applied yet
    upload_id = int(preview.split('name="upload_id" value="', 1)[1].split('"', 1)[0])
    web.post("/twopath/catalogue/diseases/apply", {"upload_id": upload_id})
    db.session.expire_all()
    names = {d.code: d.name for d in db.session.execute(sa.select(Disease)).scalars()}
    assert names["M03900"] == "高血压" and names["M09999"] == "本地病种" and "M04500" in names
    assert platform.records()["calls"]["1309"] == 1


def test_1309_marks_diseases_the_platform_made_invalid_as_disabled(tp_registry, app):  # noqa: F811
    from plugins.twopath import catalogue

    rows = [{"opsp_dise_code": "A1", "opsp_dise_name": "甲", "vali_flag": "0"},
            {"opsp_dise_code": "B1", "opsp_dise_name": "乙", "vali_flag": "0"}]
    from plugins.twopath.models import Disease

    db.session.add(Disease(code="A1", name="甲"))
    db.session.commit()
    diff = catalogue.diff_diseases(rows)
    assert diff.disabled == [("A1", "甲")] and diff.added == []  # an invalid new code is not added


def test_5205_records_come_from_the_platform_with_the_operators_identity(platform, app):  # noqa: F811
    from plugins.twopath import filings

    filing = new_filing("twopath", 4)
    records, upload_id = filings.medication_records(filing, actor="doctor", opter="1001", opter_name="王医生",
                                                    days=90)
    assert 2 <= len(records) <= 4 and all("psn_no" not in r for r in records)
    assert {"fee_ocur_time", "hilist_name", "cnt", "fixmedins_name"} <= set(records[0])
    assert platform.records()["calls"]["5205"] == 1
    assert person(4)["psn_no"]
