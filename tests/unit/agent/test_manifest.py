"""The manifest: rows and data of each table as a dump holds them, documents by hash, and the comparison."""

from __future__ import annotations

from pathlib import Path

from shuttle_host import manifest


def digest(*lines: bytes) -> dict:
    found = manifest.DumpDigest()
    for line in lines:
        found.feed(line)
    return found.tables()


def test_rows_are_counted_past_parentheses_quotes_and_escapes_inside_values() -> None:
    line = rb"INSERT INTO `notes` VALUES (1,'a (b), c'),(2,'it\'s (x'),(3,'\\'),(4,0x28292C),(5,NULL);"
    assert digest(line)["notes"]["rows"] == 5


def test_rows_one_per_line_as_mariadb_dump_10_11_writes_them_are_counted_and_hashed_as_one_statement() -> None:
    """MariaDB 10.11's mariadb-dump: `INSERT INTO `t` VALUES` alone, then a line per row; a string may end in `;`."""
    tables = digest(
        b"INSERT INTO `notes` VALUES\n", b"(1,'ends in a semicolon;'),\n", b"(2,'b');\n",
        b"/*!40000 ALTER TABLE `notes` ENABLE KEYS */;\n", b"INSERT INTO `other` VALUES\n", b"(7,'c');\n",
    )  # fmt: skip
    assert tables["notes"]["rows"] == 2 and tables["other"]["rows"] == 1
    assert tables["notes"] != digest(b"INSERT INTO `notes` VALUES\n", b"(1,'ends in a semicolon;'),\n",
                                     b"(2,'c');\n")["notes"]  # fmt: skip


def test_a_table_is_named_with_backquotes_in_its_name_and_an_empty_one_is_listed() -> None:
    tables = digest(b"CREATE TABLE `odd``name` (\n", b"CREATE TABLE `empty` (\n",
                    b"INSERT INTO `odd``name` VALUES (1),(2);\n")  # fmt: skip
    assert tables["odd`name"]["rows"] == 2 and tables["empty"]["rows"] == 0


def test_the_same_rows_give_the_same_digest_and_one_changed_value_another() -> None:
    a = digest(b"INSERT INTO `t` VALUES (1,'x'),(2,'y');\n")
    assert a == digest(b"INSERT INTO `t` VALUES (1,'x'),(2,'y');")
    changed = digest(b"INSERT INTO `t` VALUES (1,'x'),(2,'z');\n")
    assert changed["t"]["rows"] == 2 and changed["t"]["sha256"] != a["t"]["sha256"]


def sites(root: Path) -> Path:
    (root / "default" / "documents" / "logs_and_misc" / "methods").mkdir(parents=True)
    (root / "default" / "documents" / "logs_and_misc" / "methods" / "sixa").write_text("key")
    (root / "default" / "documents" / "1").mkdir()
    (root / "default" / "documents" / "1" / "scan.pdf").write_bytes(b"%PDF")
    (root / "default" / "sqlconf.php").write_text("<?php")
    (root / "default" / "docker-version").write_text("6\n")
    return root


def test_documents_hold_the_site_keys_and_the_marker_is_read(tmp_path: Path) -> None:
    record = manifest.build("r1", {}, sites(tmp_path), {"app": {"image": "openemr:7.0.3", "id": "sha256:1"}})
    assert set(record["documents"]) == {"default/documents/logs_and_misc/methods/sixa", "default/documents/1/scan.pdf"}
    assert record["docker_version"] == "6" and record["version"] == manifest.VERSION


def test_compare_names_each_difference_and_ignores_documents_added_since(tmp_path: Path) -> None:
    expected = manifest.build("r1", digest(b"INSERT INTO `t` VALUES (1),(2);", b"CREATE TABLE `gone` ("),
                              sites(tmp_path), {})  # fmt: skip
    docs = dict(expected["documents"])
    docs["default/documents/1/scan.pdf"] = "0" * 64
    del docs["default/documents/logs_and_misc/methods/sixa"]
    docs["default/documents/2/new.pdf"] = "1" * 64
    found = manifest.compare(expected, digest(b"INSERT INTO `t` VALUES (1);", b"CREATE TABLE `extra` ("), docs)
    assert found["problems"] == [
        "table gone is missing",
        "table t has 1 rows, the backup had 2",
        "table extra was not in the backup",
        "document default/documents/1/scan.pdf differs from the backup",
        "document default/documents/logs_and_misc/methods/sixa is missing",
    ]
    assert found["documents_added_since"] == 1
    same = manifest.compare(expected, expected["tables"], expected["documents"])
    assert same["problems"] == [] and same["rows"] == 2 and same["documents"] == 2
