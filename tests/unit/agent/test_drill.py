"""The restore drill's order: nothing is staged without the space for it, every check's failure is named, and
the scratch project is removed before and after, whatever happened."""

from __future__ import annotations

import pytest

from shuttle_host import drill, manifest
from shuttle_host.errors import Failed, Refused
from tests.unit.agent.fake_repository import RUN
from tests.unit.agent.fake_repository import FakeRepository as FakeRepo

TABLES = {"patient_data": {"rows": 2, "sha256": "1" * 64}}
DOCUMENTS = {"default/documents/1/scan.pdf": "2" * 64}
CANARY = {"ciphertext": "006abc", "sha256": "4" * 64}
MANIFEST = {"version": manifest.VERSION, "run": RUN, "tables": TABLES, "documents": DOCUMENTS, "canary": CANARY}


class FakeHost:
    def __init__(
        self, *, fail_at: str | None = None, tables: dict | None = None, with_manifest: bool = True,
        decrypts: bool = True, manifest: dict | None = None,
    ) -> None:  # fmt: skip
        self.log: list[str] = []
        self.fail_at, self.tables, self.with_manifest = fail_at, tables or TABLES, with_manifest
        self._decrypts, self.manifest = decrypts, manifest or MANIFEST

    def _step(self, name: str) -> None:
        self.log.append(name)
        if name == self.fail_at:
            raise Failed(f"{name} broke")

    def clear(self) -> None:
        self.log.append("clear")

    def check_space(self, needed: int) -> None:
        self.log.append(f"space {needed}")
        if self.fail_at == "space":
            raise Refused("the drill needs 1 MiB")

    def stage(self, snapshot: str) -> dict | None:
        self._step(f"stage {snapshot[:1]}")
        return self.manifest if self.with_manifest else None

    def load(self, snapshot: str) -> dict:
        self._step(f"load {snapshot[:1]}")
        return self.tables

    def documents(self) -> dict[str, str]:
        return DOCUMENTS

    def start_app(self) -> None:
        self._step("app")

    def decrypts(self, canary: dict) -> bool:
        self._step("decrypt")
        return self._decrypts and canary == CANARY


def test_a_good_backup_passes_every_check_and_leaves_nothing_behind() -> None:
    host = FakeHost()
    result = drill.drill(FakeRepo(), host, "latest", margin=20)
    assert result["result"] == "ok" and result["problems"] == [], result
    assert host.log == ["clear", "space 2400", "stage b", "load a", "app", "decrypt", "clear"]
    assert result["checked"] == {"manifest": True, "tables": 1, "rows": 2, "documents": 1,
                                 "documents_added_since": 0, "app": True, "encryption": True}  # fmt: skip


def test_too_little_space_refuses_before_anything_is_restored() -> None:
    host = FakeHost(fail_at="space")
    with pytest.raises(Refused):
        drill.drill(FakeRepo(), host, "latest")
    assert host.log == ["clear", "space 2000"]


@pytest.mark.parametrize("step", ["stage b", "load a", "app", "decrypt"])
def test_a_step_that_fails_is_named_and_the_scratch_project_is_removed(step: str) -> None:
    host = FakeHost(fail_at=step)
    result = drill.drill(FakeRepo(), host, "latest")
    assert result["result"] == "failed" and f"{step} broke" in result["message"], result
    assert host.log[-1] == "clear"


def test_a_table_that_differs_from_the_manifest_fails_and_the_app_is_not_started() -> None:
    host = FakeHost(tables={"patient_data": {"rows": 1, "sha256": "3" * 64}})
    result = drill.drill(FakeRepo(), host, "latest")
    assert result["problems"] == ["table patient_data has 1 rows, the backup had 2"]
    assert "app" not in host.log


def test_a_backup_without_a_manifest_cannot_pass() -> None:
    result = drill.drill(FakeRepo(), FakeHost(with_manifest=False), "latest")
    assert result["result"] == "failed" and "has no manifest" in result["message"]


def test_an_unknown_backup_is_refused() -> None:
    with pytest.raises(Refused):
        drill.drill(FakeRepo(), FakeHost(), "20200101T000000Z")


def test_site_keys_that_do_not_decrypt_the_canary_fail_the_drill() -> None:
    result = drill.drill(FakeRepo(), FakeHost(decrypts=False), "latest")
    assert result["problems"] == [
        "data encrypted with the site keys does not decrypt: sites/ and the database do not match"
    ]


def test_a_backup_whose_canary_could_not_be_made_cannot_pass() -> None:
    host = FakeHost(manifest={**MANIFEST, "canary": {"error": "OpenEMR could not encrypt"}})
    result = drill.drill(FakeRepo(), host, "latest")
    assert result["problems"] == [
        "encrypted data could not be verified: no encryption canary (OpenEMR could not encrypt)"
    ]
    assert "decrypt" not in host.log
