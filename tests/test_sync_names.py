"""Windows names of NFS names (names.py): the encoding by example, and its round trip for any name.

The examples are the rules of NTFS behind 9p (docs/windows.md); the property is what the sync
relies on: every NFS name has a Windows name NTFS holds, and that name decodes back to it
exactly, so nothing is renamed on its way back to NFS.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ninepfs import windows_can_hold

from filesim.sync import names

ENCODED = [
    ("report.csv", False, "report.csv"),
    ("a:b.txt", False, "a\uff1ab.txt"),           # a：b.txt
    ('<>:"|?*\\', False, "\uff1c\uff1e\uff1a\uff02\uff5c\uff1f\uff0a\uff3c"),
    ("aux.txt", False, "\uff41ux.txt"),           # ａux.txt: a device name
    ("CON", False, "\uff23ON"),
    ("con .txt", False, "\uff43on .txt"),         # Win32 ignores the spaces before the dot
    ("com1", False, "\uff43om1"),
    ("console.txt", False, "console.txt"),        # not a device name
    ("x.", False, "x\uff0e"),                     # x．: no trailing dot
    ("x ", False, "x\u2420"),                     # x␠: no trailing space
    ("a b.c", False, "a b.c"),
    ("a\x01b", False, "a\u2401b"),                # a␁b: no control character
    ("caf\udce9", False, "caf\u201bE9"),          # a byte that is not UTF-8: caf‛E9
    ("\udc80\udcff", False, "\u201b80\u201bFF"),
    ("a\uff1ab", False, "a\u201b\uff1ab"),        # an NFS name with a look-alike: escaped
    ("\u201b", False, "\u201b\u201b"),            # the escape itself
    ("x\uff0e", False, "x\u201b\uff0e"),          # a trailing look-alike dot
    ("\uff41ux.txt", False, "\u201b\uff41ux.txt"),  # looks like an encoded device name
    (".filesim", True, "\uff0efilesim"),          # the agent's own names at the top
    (".FILESIM-share", True, "\uff0eFILESIM-share"),
    (".filesim", False, ".filesim"),              # below the top they are the users'
    ("\uff0efilesim", True, "\u201b\uff0efilesim"),
    ("", False, ""),
]


@pytest.mark.parametrize(("nfs", "top", "windows"), ENCODED)
def test_each_name_has_the_windows_name_of_the_rules(nfs, top, windows):
    assert names.encode(nfs, top=top) == windows
    assert names.decode(windows, top=top) == nfs
    assert names.is_valid(nfs) is (nfs == windows or top)


def test_windows_names_no_nfs_name_encodes_to_decode_to_themselves():
    assert names.decode("\uff0e") == "\uff0e"  # ．alone would decode to "."
    assert names.decode("..") == ".."
    assert names.decode("\u201b.\u201b.") == "\u201b.\u201b."  # would be "..", and "." alike
    assert names.decode("\u201b.") == "\u201b."
    assert names.decode("a\u201b") == "a\u201b"  # a stray escape at the end
    assert names.decode("\u201b41") == "41"  # an escaped ASCII pair is no byte: "4" escaped
    assert names.decode("\u201b7F") == "7F"


def test_paths_are_encoded_name_by_name_the_first_at_the_top():
    assert names.encode_path(".filesim/.filesim/a:b") == "\uff0efilesim/.filesim/a\uff1ab"
    assert names.decode_path("\uff0efilesim/.filesim/a\uff1ab") == ".filesim/.filesim/a:b"
    assert names.encode_path(".filesim", top=False) == ".filesim"
    assert names.decode_path("\uff0efilesim", top=False) == "\uff0efilesim"


NFS_NAMES = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=()),
                    min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))
#: Names made mostly of what the rules are about, to reach them often.
TRICKY = st.text(st.sampled_from(list('aux.con :?*"<>|\\\x01 .\uff0e\uff1a\u201b\u2420\udce9'
                                      "filesim-share\uff41")), min_size=1, max_size=10).filter(
    lambda n: n not in (".", ".."))


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(name=st.one_of(NFS_NAMES, TRICKY), top=st.booleans())
def test_every_nfs_name_has_a_windows_name_ntfs_holds_and_decoding_gives_it_back(name, top):
    windows = names.encode(name, top=top)
    assert names.decode(windows, top=top) == name
    assert windows_can_hold(windows), windows
    assert not any(0xDC80 <= ord(c) <= 0xDCFF for c in windows)  # valid UTF-8
    if top:
        assert windows.casefold() not in names.TOP_RESERVED


def test_a_path_is_too_long_from_260_characters_with_its_root_or_a_name_over_255():
    root = len("C:\\simulator-data\\nas-backup")  # 28
    assert not names.too_long("a" * (259 - root - 1), root)
    assert names.too_long("a" * (259 - root), root)
    assert names.too_long("d/" + "b" * 256, 0)
    assert not names.too_long("d/" + "b" * 255, 0)
    assert names.too_long("\U0001f600" * 120, root)  # two UTF-16 units each: 240 + 29 > 259
    assert not names.too_long("\u00e9" * 200, root)  # one unit each


@pytest.mark.parametrize(("name", "n", "why", "alternative"), [
    ("report.csv", 2, "case", "report (case 2).csv"),
    ("README", 3, "case", "README (case 3)"),
    (".bashrc", 2, "name", ".bashrc (name 2)"),
    ("a.tar.gz", 2, "case", "a.tar (case 2).gz"),
    ("line\nbreak.txt", 2, "case", "line\nbreak (case 2).txt"),
])
def test_an_alternative_name_says_why_and_leads_back_to_its_name(name, n, why, alternative):
    assert names.alternative(name, n, why) == alternative
    assert names.alternative_of(alternative, why) == name
    assert names.alternative_of(alternative, "other") is None
    assert names.alternative_of(name, why) is None
    if why == "case":  # the default: two NFS names one Windows name apart in case only
        assert names.alternative(name, n) == alternative


def test_a_path_is_shown_with_its_bytes_that_are_not_utf8_escaped():
    assert names.display("caf\udce9/r\u00e9sum\u00e9") == "caf\\xe9/r\u00e9sum\u00e9"
    assert names.case_key("D/A.txt") == names.case_key("d/a.TXT") == "d/a.txt"
