"""The in-memory store that keeps the Case Explorer's inputs across a browser reload (pfs_ui.persist)."""

import binascii

from pfs_ui.persist import InputStore, KeptFile, RestoredFile, kept_file, xsrf_token


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _file(name: str, size: int) -> KeptFile:
    return KeptFile(name=name, data=b"x" * size, file_id=name)


def test_fields_and_files_come_back_for_the_same_browser_only():
    store = InputStore()
    store.put_fields("a", {"source": "Upload PET/CT", "lab_upload_albumin": 3.9})
    assert store.put_files("a", "pet", (_file("pet.nii.gz", 10),))
    entry = store.get("a")
    assert entry is not None and entry.fields["lab_upload_albumin"] == 3.9
    assert [f.name for f in entry.files["pet"]] == ["pet.nii.gz"]
    assert store.get("b") is None
    entry.fields["source"] = "changed"  # a copy: the store is changed only through its methods
    assert store.get("a").fields["source"] == "Upload PET/CT"


def test_an_entry_expires_after_the_ttl_since_its_last_use():
    clock = Clock()
    store = InputStore(ttl_s=60, clock=clock)
    store.put_fields("a", {"source": "Sample case"})
    clock.now = 50
    assert store.get("a") is not None  # a use renews it
    clock.now = 100
    assert store.get("a") is not None
    clock.now = 161
    assert store.get("a") is None and len(store) == 0


def test_files_over_the_entry_cap_are_not_kept_and_the_oldest_browsers_go_first():
    clock = Clock()
    store = InputStore(max_entry_bytes=100, max_total_bytes=150, max_entries=3, clock=clock)
    assert not store.put_files("a", "pet", (_file("big", 101),))
    assert store.put_files("a", "pet", (_file("pet", 60),))
    assert not store.put_files("a", "ct", (_file("ct", 41),))  # 60 + 41 > 100 for one browser
    clock.now = 1
    assert store.put_files("b", "pet", (_file("pet", 60),))
    clock.now = 2
    assert store.put_files("c", "pet", (_file("pet", 60),))  # 180 > 150: "a", least recently used, goes
    assert store.get("a") is None and store.get("b") is not None and store.total_bytes() == 120
    for i, browser in enumerate("def", start=3):
        clock.now = i
        store.put_fields(browser, {})
    assert len(store) == 3 and store.get("f") is not None


def test_a_role_is_replaced_or_forgotten_and_clear_forgets_the_browser():
    store = InputStore()
    store.put_files("a", "pet", (_file("one", 5),))
    store.put_files("a", "pet", (_file("two", 5),))
    assert [f.name for f in store.get("a").files["pet"]] == ["two"]
    store.put_files("a", "pet", ())
    assert "pet" not in store.get("a").files
    store.put_fields("b", {"x": 1})
    store.forget("a")
    assert store.get("a") is None and store.get("b").fields == {"x": 1}


def test_the_xsrf_token_is_the_same_whatever_the_mask():
    token = bytes(range(16))

    def cookie(mask: bytes) -> str:
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(token))
        return f"2|{binascii.b2a_hex(mask).decode()}|{binascii.b2a_hex(masked).decode()}|1700000000"

    assert xsrf_token(cookie(b"\x01\x02\x03\x04")) == xsrf_token(cookie(b"\xff\x00\xaa\x55")) == token
    assert xsrf_token(None) is None and xsrf_token("2|zz|yy|1") is None and xsrf_token("") is None


def test_a_restored_file_reads_like_an_upload():
    restored = RestoredFile(KeptFile(name="ct.nii.gz", data=b"\x1f\x8babc", file_id="id1"))
    assert restored.name == "ct.nii.gz" and restored.size == 5 and restored.getvalue() == b"\x1f\x8babc"
    with restored.getbuffer() as view:
        assert bytes(view[:2]) == b"\x1f\x8b"
    assert kept_file(restored) == KeptFile(name="ct.nii.gz", data=b"\x1f\x8babc", file_id="id1")
