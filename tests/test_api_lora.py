"""LoRA files: the library (engine side) and the /lora routes."""

from __future__ import annotations

import io
import json
import pickle
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import (
    api_client,
    lora_bytes,
    not_lora_bytes,
    safetensors_bytes,
    torch_zip_lora_bytes,
)
from wan_desktop.api.settings import ApiSettings
from wan_desktop.engine import InvalidInputError
from wan_desktop.engine.lora_library import LoraExistsError, LoraLibrary, LoraNotFoundError


def put(lib: LoraLibrary, filename: str, data: bytes) -> Any:
    with lib.incoming(Path(filename).suffix) as tmp:
        tmp.write_bytes(data)
        return lib.install(tmp, filename)


def test_library_installs_inspects_lists_and_deletes(tmp_path: Path) -> None:
    lib = LoraLibrary(tmp_path / "loras")
    info = put(lib, "My Style!.safetensors", lora_bytes(rank=8, blocks=3))
    assert (
        info.file.filename == "My_Style.safetensors"
        and info.file.ref == "loras/My_Style.safetensors"
    )
    assert info.rank == 8 and info.alpha == 4.0 and info.format == "safetensors"
    assert info.modules == ("blocks.*.attn1.to_k", "blocks.*.attn1.to_q")
    assert info.params == 3 * 2 * 2 * 8 * 24
    assert info.memory_impact()["adapter_mb"] == pytest.approx(info.params * 2 / 2**20, abs=0.01)
    assert [f.filename for f in lib.list()] == ["My_Style.safetensors"]
    assert lib.get("My_Style").filename == lib.get("loras/My_Style.safetensors").filename
    assert (
        lib.resolve("loras/My_Style.safetensors")
        == (tmp_path / "loras" / "My_Style.safetensors").resolve()
    )
    assert not list((tmp_path / "loras" / ".incoming").iterdir())
    with pytest.raises(LoraExistsError):
        put(lib, "My_Style.pt", lora_bytes())  # same stem
    lib.delete("My_Style")
    assert lib.list() == []
    with pytest.raises(LoraNotFoundError):
        lib.get("My_Style")


def test_library_reads_torch_zip_files_without_running_code(tmp_path: Path) -> None:
    lib = LoraLibrary(tmp_path)
    info = put(lib, "comfy.pt", torch_zip_lora_bytes())
    assert info.format == "torch" and info.rank == 8
    assert info.modules == ("blocks.*.self_attn.q",)


def test_library_refuses_what_is_not_a_lora(tmp_path: Path) -> None:
    import io
    import pickle
    import zipfile

    lib = LoraLibrary(tmp_path)
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(print))  # would call a function if loaded
    cases = {
        "plain.safetensors": not_lora_bytes(),
        "junk.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......",
        "truncated.safetensors": lora_bytes()[:-10],
        "legacy.pt": pickle.dumps({"a": 1}),
        "evil.pth": evil.getvalue(),
        "bad.txt": lora_bytes(),
    }
    for name, data in cases.items():
        with pytest.raises(InvalidInputError) as err:
            put(lib, name, data)
        assert "file" in err.value.errors, name
    assert lib.list() == []


@pytest.mark.parametrize(
    "ref",
    [
        "../secret.safetensors",
        "loras/../x.safetensors",
        "/etc/passwd",
        "a/b.safetensors",
        "",
        "..",
        "x\x00.safetensors",
    ],
)
def test_resolve_never_leaves_the_folder(tmp_path: Path, ref: str) -> None:
    (tmp_path / "secret.safetensors").write_bytes(lora_bytes())
    lib = LoraLibrary(tmp_path / "loras")
    with pytest.raises(InvalidInputError):
        lib.resolve(ref)


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with api_client(tmp_path) as (c, eng):
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def upload(c: Any, filename: str, data: bytes, **form: str) -> Any:
    return c.post(
        "/api/v1/lora/upload",
        files={"file": (filename, data, "application/octet-stream")},
        data=form,
    )


def test_upload_list_status_memory_and_delete(client: Any) -> None:
    r = upload(client, "anime.safetensors", lora_bytes(rank=16), name="Anime v2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["lora_name"] == "Anime_v2"
    assert (
        body["file_path"] == "loras/Anime_v2.safetensors"
        and body["size_mb"] > 0
        and body["message"]
    )
    for path in ("/api/v1/lora/list", "/api/v1/lora"):
        listing = client.get(path).json()
        assert listing["total_count"] == 1 and listing["total_size_mb"] > 0
        (entry,) = listing["loras"]
        assert entry["name"] == "Anime_v2" and entry["filename"] == "Anime_v2.safetensors"
        assert entry["path"] == "loras/Anime_v2.safetensors" and entry["modified_time"]
        assert (
            entry["is_loaded"] is False
            and entry["is_applied"] is False
            and entry["current_strength"] == 0.0  # a number, never null
        )
    st = client.get("/api/v1/lora/Anime_v2/status").json()
    assert st["rank"] == 16 and st["target_modules"] == [
        "blocks.*.attn1.to_k",
        "blocks.*.attn1.to_q",
    ]
    mem = client.get("/api/v1/lora/Anime_v2.safetensors/memory-impact").json()
    assert (
        mem["rank"] == 16
        and mem["adapter_mb"] > 0
        and mem["two_expert_mb"] == pytest.approx(2 * mem["adapter_mb"])
    )
    assert client.delete("/api/v1/lora/Anime_v2").status_code == 200
    assert client.get("/api/v1/lora/list").json()["loras"] == []


def test_upload_errors(client: Any) -> None:
    assert upload(client, "x.safetensors", lora_bytes()).status_code == 200
    r = upload(client, "x.safetensors", lora_bytes())
    assert r.status_code == 409 and "exists" in r.json()["detail"]
    assert upload(client, "x.exe", lora_bytes()).status_code == 422
    assert upload(client, "empty.safetensors", b"").status_code == 422
    r = upload(client, "notlora.safetensors", not_lora_bytes())
    assert r.status_code == 422 and "not a LoRA" in r.text
    assert upload(client, "n.safetensors", lora_bytes(), name="n" * 101).status_code == 422
    assert upload(client, "n.safetensors", lora_bytes(), name="../../..").status_code == 422
    assert client.post("/api/v1/lora/upload", data={"name": "x"}).status_code == 422
    assert client.post("/api/v1/lora/upload", json={"file": "x"}).status_code == 422
    assert [f["name"] for f in client.get("/api/v1/lora/list").json()["loras"]] == ["x"]


def test_upload_over_the_limit_is_refused_while_streaming(tmp_path: Path) -> None:
    with api_client(tmp_path, settings=ApiSettings(max_lora_bytes=50_000)) as (c, eng):
        big = safetensors_bytes(
            {"a.lora_A.weight": ("F32", [4, 30_000]), "a.lora_B.weight": ("F32", [4, 4])}
        )
        r = upload(c, "big.safetensors", big)
        assert r.status_code == 422 and "over" in r.text
        assert not any(eng.settings.loras_dir.glob("*.safetensors"))


def test_unknown_and_traversing_names_are_404(client: Any) -> None:
    for name in ("missing", "..%2F..%2Fetc%2Fpasswd", "%2e%2e"):
        assert client.get(f"/api/v1/lora/{name}/status").status_code == 404
        assert client.get(f"/api/v1/lora/{name}/memory-impact").status_code == 404
        assert client.delete(f"/api/v1/lora/{name}").status_code == 404
        assert client.post(f"/api/v1/lora/{name}/preview", json={"prompt": "x"}).status_code == 404


def test_preview_takes_json_or_form(client: Any) -> None:
    upload(client, "watercolor.safetensors", lora_bytes())
    r = client.post("/api/v1/lora/watercolor/preview", json={"prompt": "a harbour at dawn"})
    assert r.status_code == 200
    assert (
        r.json()["base_prompt"] == "a harbour at dawn"
        and "watercolor" in r.json()["enhanced_prompt"]
    )
    r = client.post("/api/v1/lora/watercolor/preview", data={"base_prompt": "a harbour"})
    assert r.status_code == 200 and r.json()["base_prompt"] == "a harbour"
    assert client.post("/api/v1/lora/watercolor/preview", json={}).status_code == 422
    assert (
        client.post(
            "/api/v1/lora/watercolor/preview",
            content=b"{",
            headers={"content-type": "application/json"},
        ).status_code
        == 422
    )


def test_a_lora_in_use_shows_applied_and_cannot_be_deleted(tmp_path: Path) -> None:
    from tests.engine_helpers import wait_job
    from wan_desktop.engine import JobState

    with api_client(tmp_path, step_s=0.2) as (c, eng):
        upload(c, "inuse.safetensors", lora_bytes())
        r = c.post(
            "/api/v1/generation/submit",
            json={
                "model_type": "T2V-A14B",
                "prompt": "x",
                "steps": 100,
                "lora_path": "loras/inuse.safetensors",
                "lora_strength": 0.7,
            },
        )
        jid = r.json()["task_id"]
        wait_job(eng, jid, JobState.running)
        (entry,) = c.get("/api/v1/lora/list").json()["loras"]
        # The mock pipeline loads no model, so nothing is loaded or applied; the file is in use.
        assert entry["in_use"] is True
        assert entry["is_loaded"] is entry["is_applied"] is False
        assert entry["current_strength"] == 0.0  # not applied: 0.0, never null
        assert c.delete("/api/v1/lora/inuse").status_code == 409
        c.post(f"/api/v1/queue/{jid}/cancel")
        wait_job(eng, jid, JobState.cancelled)
        assert c.delete("/api/v1/lora/inuse").status_code == 200


def test_a_lora_is_not_deleted_when_the_running_job_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job store that fails while the running job is read used to count as "nothing in use",
    so the LoRA under a running job could be deleted; now the failure answers, the file stays."""
    import sqlite3

    from tests.engine_helpers import wait_job
    from wan_desktop.engine import JobState

    with api_client(tmp_path, step_s=0.2) as (c, eng):
        upload(c, "busy.safetensors", lora_bytes())
        r = c.post(
            "/api/v1/generation/submit",
            json={
                "model_type": "T2V-A14B",
                "prompt": "x",
                "steps": 100,
                "lora_path": "loras/busy.safetensors",
            },
        )
        jid = r.json()["task_id"]
        wait_job(eng, jid, JobState.running)

        def broken(job_id: str) -> None:
            raise sqlite3.DatabaseError("database disk image is malformed")

        with monkeypatch.context() as m:
            m.setattr(eng, "get", broken)
            try:
                status = c.delete("/api/v1/lora/busy").status_code
            except sqlite3.DatabaseError:
                status = 500  # raised through the test client: not turned into "not in use"
            assert status >= 500
        assert (eng.settings.loras_dir / "busy.safetensors").is_file()
        c.post(f"/api/v1/queue/{jid}/cancel")
        wait_job(eng, jid, JobState.cancelled)


@pytest.mark.slow
def test_lora_flags_follow_the_loaded_wan_model(tiny_models_root: Path, tmp_path: Path) -> None:
    """is_loaded / is_applied / current_strength read the real pipeline's adapters."""
    pytest.importorskip("diffusers")
    from tests.engine_helpers import wait_job
    from tests.wan_helpers import make_lora, real_engine
    from wan_desktop.engine import JobState

    eng = real_engine(tiny_models_root, tmp_path / "data")
    eng.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    make_lora(eng.settings.loras_dir / "style.safetensors")
    make_lora(eng.settings.loras_dir / "other.safetensors", seed=2)
    small = {"model_type": "T2V-A14B", "prompt": "a fox", "steps": 2, "num_frames": 5}

    def flags() -> dict[str, tuple[Any, ...]]:
        return {
            e["name"]: (e["is_loaded"], e["is_applied"], e["current_strength"])
            for e in c.get("/api/v1/lora/list").json()["loras"]
        }

    def run(**extra: Any) -> None:
        r = c.post("/api/v1/generation/submit", json={**small, **extra})
        assert r.status_code == 200, r.text
        job = wait_job(eng, r.json()["task_id"], JobState.completed, JobState.failed, timeout=300)
        assert job.state is JobState.completed, job.failure

    try:
        with api_client(tmp_path, engine=eng) as (c, _):
            assert flags() == {"style": (False, False, 0.0), "other": (False, False, 0.0)}
            run(lora_path="loras/style.safetensors", lora_strength=0.7)
            assert flags() == {"style": (True, True, 0.7), "other": (False, False, 0.0)}
            status = c.get("/api/v1/lora/style/status").json()
            assert status["current_strengths"] == {"transformer": 0.7, "transformer_2": 0.7}
            # A job without it switches it off; its adapter stays in the warm model.
            run()
            assert flags() == {"style": (True, False, 0.0), "other": (False, False, 0.0)}
            eng.unload()
            deadline = time.monotonic() + 60
            while eng.loaded_models():
                assert time.monotonic() < deadline, "the model was not unloaded"
                time.sleep(0.05)
            assert flags() == {"style": (False, False, 0.0), "other": (False, False, 0.0)}
    finally:
        eng.shutdown()


def raw_safetensors(header_json: str, data_bytes: int = 64) -> bytes:
    """A safetensors file with this exact header text (crafted: json.dumps could not write it)."""
    raw = header_json.encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data_bytes)


def torch_zip(pickled: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickled)
        zf.writestr("archive/data/0", bytes(64))
    return buf.getvalue()


def crafted_pickle(size: tuple[Any, ...], storage: Any = "storage") -> bytes:
    """What torch.save writes for one tensor, with the size (and storage) chosen by the test."""
    import torch

    class Storage:
        pass

    class Tensor:
        def __reduce__(self) -> Any:
            return (
                torch._utils._rebuild_tensor_v2,
                (Storage() if storage == "storage" else storage, 0, size, (1,), False, {}),
            )

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, Storage):
                return ("storage", torch.FloatStorage, "0", "cpu", 16)
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(
        {"blocks.0.q.lora_A.weight": Tensor(), "blocks.0.q.lora_B.weight": Tensor()}
    )
    return buf.getvalue()


def crafted_loras() -> dict[str, bytes]:
    entry = '"dtype":"F32","data_offsets":[0,16]'
    good = zipfile.ZipFile(io.BytesIO(torch_zip_lora_bytes()))
    pkl = next(n for n in good.namelist() if n.endswith("data.pkl"))
    return {
        "shape_1e999.safetensors": raw_safetensors(
            '{"a.lora_A.weight":{' + entry + ',"shape":[1e999,4]}}'
        ),
        "shape_infinity.safetensors": raw_safetensors(
            '{"a.lora_A.weight":{' + entry + ',"shape":[Infinity,4]}}'
        ),
        "offsets_inf.safetensors": raw_safetensors(
            '{"a.lora_A.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,Infinity]}}'
        ),
        "nested.safetensors": raw_safetensors(
            '{"a":' + "[" * 100_000 + "]" * 100_000 + "}", data_bytes=8
        ),
        "truncated_pickle.pt": torch_zip(good.read(pkl)[: len(good.read(pkl)) // 2]),
        "bad_rebuild_args.pt": torch_zip(crafted_pickle((2, 2), storage="not a storage")),
        "rebuild_no_size.pt": torch_zip(crafted_pickle(None)),  # type: ignore[arg-type]
        "size_inf.pt": torch_zip(crafted_pickle((float("inf"), 4))),
        "surrogate_key.safetensors": raw_safetensors(
            '{"\\ud800.lora_A.weight":{' + entry + ',"shape":[2,"x"]}}'
        ),
    }


def test_crafted_lora_files_are_refused_with_422_naming_the_file(client: Any) -> None:
    for filename, data in crafted_loras().items():
        r = upload(client, filename, data)
        assert r.status_code == 422, (filename, r.status_code, r.text[:300])
        detail = r.json()["detail"]
        assert Path(filename).stem in json.dumps(detail), (filename, detail)
        assert len(r.content) < 2000, filename
    assert client.get("/api/v1/lora/list").status_code == 200
    # Nothing kept, not even the uploads' temporary files.
    assert [p for p in client.engine.settings.loras_dir.rglob("*") if p.is_file()] == []


def zip_bomb(declared: int = 1 << 30) -> bytes:
    """A torch-like zip of ~1 MB whose data.pkl inflates to 1 GiB (made in chunks: never held)."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("archive/data.pkl", "w", force_zip64=True) as entry,
    ):
        chunk = bytes(1 << 20)
        for _ in range(declared >> 20):
            entry.write(chunk)
    return buf.getvalue()


def test_a_zip_bomb_is_refused_by_its_declared_size_with_bounded_memory(client: Any) -> None:
    import tracemalloc

    bomb = zip_bomb()
    assert len(bomb) < 2 * 2**20
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        r = upload(client, "bomb.pt", bomb)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # The upload itself is held once or twice (1 MB each); the 1 GiB is never inflated.
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["msg"] == (
        "file: bomb.pt: not a loadable LoRA: its data.pkl unpacks to more than 16 MB, which no "
        "LoRA's does (a zip bomb?)"
    )


def test_a_zip_that_lies_about_its_size_is_read_through_a_bounded_reader(client: Any) -> None:
    import tracemalloc

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", bytes(64 << 20))  # 64 MB of zeros in ~64 KB
    data = bytearray(buf.getvalue())
    # Declare 1000 bytes in both headers: the entry must not be believed, nor inflated whole.
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.index(sig)
        data[i + at : i + at + 4] = struct.pack("<I", 1000)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        assert zf.infolist()[0].file_size == 1000
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        r = upload(client, "liar.pt", bytes(data))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert r.status_code == 422 and "liar.pt" in r.text, r.text
