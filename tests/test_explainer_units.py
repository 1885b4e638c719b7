"""Explainer parts that need no rendering: input rules, the static check, templates, parsing."""

from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_chat import (
    Fail,
    FakeChat,
    Reply,
    outline_reply,
    scenario_reply,
    scene_code,
)
from wan_desktop.engine import InvalidInputError
from wan_desktop.explainer.answers import AnswerError, extract_code, extract_json
from wan_desktop.explainer.codecheck import check_scene_code
from wan_desktop.explainer.content import analyse, parse_function
from wan_desktop.explainer.llm import ChatClient, ChatError
from wan_desktop.explainer.llm_writer import LlmWriter
from wan_desktop.explainer.media import CUE_CHARS, Cue, cue_at, cues_for, parse_subtitles, srt_text
from wan_desktop.explainer.offline import OfflineWriter
from wan_desktop.explainer.params import ExplainerParams, validate_explainer_params
from wan_desktop.explainer.plan import SceneKind
from wan_desktop.explainer.rag import NotesIndex
from wan_desktop.explainer.settings import (
    ExplainerSettings,
    S3Settings,
    SandboxMode,
    StorageMode,
)

SETTINGS = ExplainerSettings.from_env({})


# ------------------------------------------------------------------------------- parameters


def test_valid_request_is_normalised_with_defaults_and_revalidates() -> None:
    p = validate_explainer_params({"topic": "  Gravity ", "context": "Things fall."}, SETTINGS)
    assert p.topic == "Gravity" and p.quality == SETTINGS.default_quality
    assert p.enable_subtitles and p.enable_thumbnails and not p.burn_subtitles
    assert p.storage is StorageMode.local_only and p.output_format == "mp4"
    again = validate_explainer_params(p.to_dict(), SETTINGS)  # what a retry does
    assert again == p


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InvalidInputError) as err:
        validate_explainer_params(
            {
                "topic": "",
                "context": "x" * 2001,
                "quality": "best",
                "output_format": "webm",
                "storage_mode": "s3_only",
                "scene_count": 9,
                "use_rag": "perhaps",
                "model": "llama3",
                "colour": "red",
            },
            SETTINGS,
        )
    errors = err.value.errors
    assert set(errors) == {
        "topic",
        "context",
        "quality",
        "output_format",
        "storage_mode",
        "scene_count",
        "use_rag",
        "model",
        "colour",
    }
    assert "2001 characters" in errors["context"]
    assert "OUTPUT_S3_BUCKET" in errors["storage_mode"]
    assert "LLM_BASE_URL" in errors["model"] and "template" in errors["model"]
    assert "3–7" in errors["scene_count"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("topic", "a\x00b", "control characters"),
        ("topic", "t" * 501, "501 characters"),
        ("context", 42, "must be text"),
        ("scene_count", 3.5, "whole number"),
        ("scene_count", True, "whole number"),
    ],
)
def test_bad_values_get_a_clear_message(field: str, value: object, expected: str) -> None:
    raw = {"topic": "T", "context": "C", field: value}
    with pytest.raises(InvalidInputError) as err:
        validate_explainer_params(raw, SETTINGS)
    assert expected in err.value.errors[field]


def test_storage_modes_need_a_bucket_and_accept_one() -> None:
    s3 = ExplainerSettings.from_env({}, s3=S3Settings(bucket="videos"))
    p = validate_explainer_params(
        {"topic": "T", "context": "C", "storage_mode": "local_and_s3"}, s3
    )
    assert p.storage is StorageMode.local_and_s3


def test_settings_come_from_the_environment_with_clear_errors() -> None:
    s = ExplainerSettings.from_env(
        {
            "MAX_SCENE_CONCURRENCY": "3",
            "MAX_CONCURRENT_RENDERS": "2",
            "DEFAULT_QUALITY": "low",
            "USE_GPU_ACCELERATION": "1",
            "USE_RAG": "true",
            "LLM_BASE_URL": "http://127.0.0.1:9/v1/",
            "PLANNER_MODEL": "planner",
            "STORAGE_MODE": "local_and_s3",
            "OUTPUT_S3_BUCKET": "b",
            "EXPLAINER_SANDBOX": "unshare",
        }
    )
    assert (s.max_scene_concurrency, s.max_concurrent_renders) == (3, 2)
    assert s.default_quality == "low" and s.use_gpu_acceleration and s.use_rag
    assert s.llm.base_url == "http://127.0.0.1:9/v1" and s.llm.configured
    assert s.llm.models(None) == ("planner", "planner", "planner")
    assert s.llm.models("other") == ("other", "other", "other")
    assert s.storage_mode is StorageMode.local_and_s3 and s.sandbox is SandboxMode.unshare
    for env, message in (
        ({"DEFAULT_QUALITY": "4k"}, "DEFAULT_QUALITY"),
        ({"MAX_CONCURRENT_RENDERS": "0"}, "out of range"),
        ({"MAX_SCENE_CONCURRENCY": "two"}, "whole number"),
        ({"USE_RAG": "maybe"}, "yes/no"),
        ({"STORAGE_MODE": "ftp"}, "local_only"),
    ):
        with pytest.raises(ValueError, match=message):
            ExplainerSettings.from_env(env)


# ------------------------------------------------------------------------------ static check

GOOD = scene_code("Scene01", "hello").split("```python\n")[1].split("```")[0]


def test_good_scene_code_passes_the_check() -> None:
    result = check_scene_code(GOOD, "Scene01")
    assert result.ok and result.class_name == "Scene01"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import os", "import of 'os' is not allowed"),
        ("import subprocess as sp", "import of 'subprocess'"),
        ("from socket import socket", "import from 'socket'"),
        ("from manim.utils.file_ops import open_file", "manim.utils.file_ops"),
        ("from manim import config, tempconfig", "'tempconfig'"),
        ("import numpy.ctypeslib", "numpy.ctypeslib"),
        ("x = open('/etc/passwd').read()", "'open' is not available"),
        ("eval('1+1')", "'eval' is not available"),
        ("f = __import__('os')", "'__import__'"),
        ("g = getattr(Text, 'x')", "'getattr'"),
        ("c = Text.__class__", "'__class__'"),
        ("b = Scene.__subclasses__()", "'__subclasses__'"),
        ("m = utils.file_ops.os", "attribute 'os'"),
        ("np.save('x.npy', [1])", "attribute 'save'"),
        ("config.media_dir = '/tmp'", "config.media_dir is set by the renderer"),
        ("config['pixel_width'] = 10", "config is set by the renderer"),
        ("x = MathTex(r'x')  # ok: has a stand-in\nn = DecimalNumber(3)", "DecimalNumber needs"),
        ("a = Axes(axis_config={'include_numbers': True})", "include_numbers"),
        ("a = Axes(); a.add_coordinates()", ".add_coordinates() needs LaTeX"),
    ],
)
def test_forbidden_code_is_rejected_with_a_reason(code: str, expected: str) -> None:
    result = check_scene_code(GOOD + "\n" + code + "\n", "Scene01")
    assert not result.ok
    assert any(expected in e for e in result.errors), result.errors
    assert "line " in result.errors[0] and result.message.startswith("the code was rejected")


def test_latex_constructs_pass_when_latex_is_installed() -> None:
    code = GOOD + "\nn = DecimalNumber(3)\na = Axes(axis_config={'include_numbers': True})\n"
    assert check_scene_code(code, "Scene01", latex=True).ok


def test_syntax_errors_and_missing_scenes_are_reported() -> None:
    assert "syntax error" in check_scene_code("class (:\n", "Scene01").errors[0]
    missing = check_scene_code("from manim import *\nx = 1\n", "Scene01")
    assert "define exactly one class Scene01(Scene)" in missing.errors[0]
    other = check_scene_code(GOOD.replace("Scene01", "Intro"), "Scene01")
    assert other.ok and other.class_name == "Intro"  # one scene under another name is fine


# ------------------------------------------------------------------------ offline templates

CONTEXT = (
    "The function f(x) = 2x^2 - 1 is a parabola. Einstein wrote E = mc^2 once. "
    "Plants grow towards light.\n```python\ndef square(x):\n    return x * x\n```\n"
    "Water boils at 100 degrees."
)


def test_the_offline_planner_uses_every_template_it_finds_a_reason_for() -> None:
    p = ExplainerParams(topic="Many things", context=CONTEXT, scene_count=6)
    writer = OfflineWriter()
    outline = writer.outline(p)
    kinds = [s.kind for s in outline.scenes]
    assert kinds == [
        SceneKind.title_card,
        SceneKind.graph,
        SceneKind.equation,
        SceneKind.code,
        SceneKind.bullets,
        SceneKind.shapes,
    ]
    plans = [writer.scene_plan(p, outline, s.index) for s in outline.scenes]
    assert all(plan.narration and plan.duration_s >= 3 for plan in plans)
    assert plans[1].data["expr_code"] == "((2.0 * (x ** 2.0)) - 1.0)"
    assert plans[2].data["equation"] == "E = mc²"
    codes = [writer.scene_code(p, plan, "").code for plan in plans]
    assert codes == [writer.scene_code(p, plan, "").code for plan in plans], "deterministic"
    for plan, code in zip(plans, codes, strict=True):
        assert check_scene_code(code, plan.class_name).ok, code


@pytest.mark.parametrize("count", [3, 4, 5, 7])
def test_the_offline_planner_makes_the_number_of_scenes_asked_for(count: int) -> None:
    p = ExplainerParams(topic="T", context="One sentence only.", scene_count=count)
    assert len(OfflineWriter().outline(p).scenes) == count


def test_without_a_count_the_planner_picks_3_to_7_scenes() -> None:
    short = OfflineWriter().outline(ExplainerParams(topic="T", context="Short."))
    long = OfflineWriter().outline(
        ExplainerParams(topic="T", context=" ".join(f"Sentence {i}." for i in range(40)))
    )
    assert len(short.scenes) == 3 and len(long.scenes) == 7


hostile = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Co")) | st.sampled_from("\n'\"\\{}$"),
    min_size=1,
    max_size=120,
).filter(lambda s: s.strip())


@settings(max_examples=60, deadline=None)
@given(topic=hostile, context=hostile)
def test_user_text_only_ever_becomes_string_literals(topic: str, context: str) -> None:
    p = ExplainerParams(topic=topic.strip(), context=context.strip() + "\n```\n" + topic + "\n```")
    writer = OfflineWriter()
    outline = writer.outline(p)
    for scene in outline.scenes:
        plan = writer.scene_plan(p, outline, scene.index)
        code = writer.scene_code(p, plan, "").code
        assert check_scene_code(code, plan.class_name).ok
        tree = ast.parse(code)
        # Whatever the text was, the code calls the same functions as with plain text.
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert names <= ALLOWED_TEMPLATE_NAMES, names - ALLOWED_TEMPLATE_NAMES


ALLOWED_TEMPLATE_NAMES = {
    "Scene", "self", "Text", "BOLD", "config", "GREY_B", "DOWN", "UP", "RIGHT", "LEFT", "Write",
    "FadeIn", "VGroup", "line", "items", "item", "heading", "title", "subtitle", "equation",
    "box", "caption", "SurroundingRectangle", "YELLOW", "Create", "axes", "Axes", "label",
    "curve", "x", "np", "BLUE", "shape", "Circle", "Square", "Triangle", "GREEN", "ORANGE",
    "Transform", "square", "triangle", "listing", "Code", "min",
}  # fmt: skip


def test_functions_are_parsed_into_code_never_evaluated() -> None:
    assert parse_function("f(x)", "__import__('os').system('id')") is None
    assert parse_function("f(x)", "x.__class__") is None
    assert parse_function("f(x)", "exec(x)") is None
    spec = parse_function("y", "sin(x) + 3x")
    assert spec is not None and spec.expr_code == "(np.sin(x) + (3.0 * x))"
    log = parse_function("y", "ln(x)")
    assert log is not None and log.x_range == (0.1, 4.0)  # undefined for x ≤ 0
    content = analyse("Here y = open('/etc/passwd') is not a function. E = mc^2.")
    assert content.function is None and content.equation == "E = mc²"


# ---------------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "text",
    [
        '{"title": "T", "scenes": []}',
        'Sure!\n```json\n{"title": "T", "scenes": [],}\n```\nEnjoy.',
        "Plan: {'title': 'T', 'scenes': [], 'ok': True} done",
        'prefix {"title": "T", "scenes": [], "note": "a } brace"} suffix',
    ],
)
def test_json_is_found_wherever_the_model_puts_it(text: str) -> None:
    data = extract_json(text)
    assert data["title"] == "T" and data["scenes"] == []


def test_answers_without_json_or_code_say_what_was_expected() -> None:
    with pytest.raises(AnswerError, match="JSON"):
        extract_json("I cannot do that.")
    with pytest.raises(AnswerError, match="python block"):
        extract_code("Here is an explanation with no code.")


def test_code_is_taken_from_the_block_that_defines_a_scene() -> None:
    text = "```bash\npip install manim\n```\n" + scene_code("Scene02", "x")
    code = extract_code(text)
    assert code.startswith("from manim import *") and "class Scene02(Scene)" in code
    bare = "from manim import *\nclass A(Scene):\n    def construct(self):\n        pass\n"
    assert extract_code("Answer:\n" + bare) == bare


# ------------------------------------------------------------------------------ subtitles


def test_subtitles_follow_the_scenes_and_stay_readable() -> None:
    long = " ".join(["word"] * 60)
    cues = cues_for(["Short one.", long], [3.0, 6.0])
    assert cues[0].start_s == 0.0 and cues[0].end_s == 3.0 and cues[0].text == "Short one."
    rest = cues[1:]
    assert len(rest) > 1 and rest[0].start_s == 3.0 and rest[-1].end_s == 9.0
    assert " ".join(c.text for c in rest) == long, "no word is lost"
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(cues))
    srt = srt_text(cues)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:03,000\nShort one.\n")
    assert "00:00:09,000" in srt


LONG_CONTEXT = (
    "Photosynthesis turns light into chemical energy. Plants take in carbon dioxide and water. "
    "The key relation is 6CO2 + 6H2O = C6H12O6 + 6O2. Chlorophyll, the green pigment in the "
    "chloroplasts, absorbs mostly red and blue light, which is why leaves look green to us. "
    "Oxygen is released as a by-product. The sugar feeds the plant and, through food chains, "
    "almost every animal on Earth."
)


def test_subtitle_cues_end_at_sentence_ends_and_cut_long_sentences_only_at_clauses() -> None:
    """The offline planner's real narration: a cue never stops in the middle of a sentence,
    except a sentence too long for one cue, cut after a comma, and never inside a word."""
    params = ExplainerParams(topic="Photosynthesis", context=LONG_CONTEXT)
    writer = OfflineWriter()
    outline = writer.outline(params)
    plans = [writer.scene_plan(params, outline, s.index) for s in outline.scenes]
    narrations = [p.narration for p in plans]
    cues = cues_for(narrations, [p.duration_s for p in plans])
    sentences = [s for n in narrations for s in re.split(r"(?<=\.)\s+", n)]
    assert any(len(s) > CUE_CHARS for s in sentences), "the text has a sentence to cut"
    t = 0.0
    for narration, plan in zip(narrations, plans, strict=True):
        mine = [c for c in cues if t <= c.start_s < t + plan.duration_s - 1e-6]
        assert " ".join(c.text for c in mine) == narration, "no word lost or cut"
        t += plan.duration_s
    for cue in cues:
        assert cue.text.endswith((".", ",")), f"cue stops mid-sentence: {cue.text!r}"
        if cue.text.endswith(","):
            whole = next(s for s in sentences if cue.text in s)
            assert len(whole) > CUE_CHARS, f"a short sentence was cut: {whole!r}"
        assert len(cue.text) <= CUE_CHARS or cue.text in sentences
    # Short sentences that fit a cue together share it; each is whole.
    assert "Plants take in carbon dioxide and water." in [c.text for c in cues]
    assert parse_subtitles(srt_text(cues)) == cues, "the SRT reads back as written"


def test_subtitles_read_back_from_srt_and_webvtt() -> None:
    vtt = (
        "WEBVTT\n\nNOTE made by hand\n\nintro\n00:00.500 --> 00:02.000 align:center\n"
        "<v Narrator>Light becomes</v>\nsugar.\n\n00:01:02.250 --> 00:01:03.000\nLater.\n"
    )
    assert parse_subtitles(vtt) == [
        Cue(0.5, 2.0, "Light becomes sugar."),
        Cue(62.25, 63.0, "Later."),
    ]
    srt = "1\r\n00:00:00,000 --> 00:00:01,250\r\nOne\r\n\r\n2\r\nno timing here\r\n"
    assert parse_subtitles(srt) == [Cue(0.0, 1.25, "One")]
    assert cue_at(parse_subtitles(srt), 1.25) is None and cue_at(parse_subtitles(srt), 0.0)


# ------------------------------------------------------------------------- retrieval, retry


def test_notes_index_is_built_once_and_finds_relevant_notes(tmp_path: Path) -> None:
    index = NotesIndex(tmp_path / "notes.sqlite3")
    assert index.ensure() >= 15
    titles = [n.title for n in index.search(["Axes", "plot"])]
    assert "Axes and plotting a function" in titles[:2]
    assert "MathTex" in index.notes_text(["MathTex", "latex"])
    source = tmp_path / "notes.md"
    source.write_text("## Only note\nAbout Axes.\n")
    changed = NotesIndex(tmp_path / "notes.sqlite3", source)
    assert changed.ensure() == 1, "a changed notes file rebuilds the index"
    assert index.search([]) == []


# ------------------------------------------------------------------- the chat-model writer


def _writer(
    chat: FakeChat, log: list[tuple[str, str]] | None = None, key: str | None = None
) -> LlmWriter:
    lines = log if log is not None else []
    client = ChatClient(
        chat.base_url, api_key=key, backoff_s=0.01, on_event=lambda lv, m: lines.append((lv, m))
    )
    return LlmWriter(
        client,
        planner_model="planner",
        scene_model="coder",
        helper_model="helper",
        log=lambda lv, m: lines.append((lv, m)),
    )


def test_chat_writer_plans_with_structured_prompts_and_parses_the_answers() -> None:
    script: dict[str, list[Reply]] = {
        "outline": [outline_reply(["Intro", "Middle", "End"], "Gravity")],
        "scenario": [scenario_reply("Things fall down.", 4)],
        "code": [scene_code("Scene02", "fall")],
        "search_terms": ['["Text", "FadeIn"]'],
    }
    with FakeChat(script, api_key="k").running() as chat:
        writer = _writer(chat, key="k")
        p = ExplainerParams(topic="Gravity", context="Things fall.", scene_count=3)
        outline = writer.outline(p)
        plan = writer.scene_plan(p, outline, 2)
        code = writer.scene_code(p, plan, "## Note\nUse Text.")
        terms = writer.search_terms(plan, "NameError: name 'ShowCreation' is not defined")
    assert [s.title for s in outline.scenes] == ["Intro", "Middle", "End"]
    assert outline.title == "Gravity"
    assert plan.narration == "Things fall down." and plan.duration_s == 4.0
    assert "class Scene02(Scene)" in code.code and code.author == "coder"
    assert terms[:2] == ["Text", "FadeIn"] and "ShowCreation" in terms
    outline_req, code_req = chat.of("outline")[0], chat.of("code")[0]
    assert outline_req.model == "planner" and "exactly 3 scenes" in outline_req.system
    assert "Topic: Gravity" in outline_req.user and "Things fall." in outline_req.user
    assert code_req.model == "coder" and "class Scene02(Scene)" in code_req.system
    assert "LaTeX is NOT installed" in code_req.system and "Use Text." in code_req.user
    assert chat.of("search_terms")[0].model == "helper"
    assert all(r.authorization == "Bearer k" for r in chat.requests)


def test_unusable_answers_are_asked_for_again_with_the_reason() -> None:
    log: list[tuple[str, str]] = []
    script = {"outline": ["I think three scenes.", outline_reply(["A", "B", "C"])]}
    with FakeChat(script).running() as chat:
        outline = _writer(chat, log).outline(ExplainerParams(topic="T", context="C"))
    assert len(outline.scenes) == 3
    second = chat.of("outline")[1]
    assert "could not be used" in second.user and "JSON" in second.user
    assert any("asking again" in m for _, m in log)


def test_server_errors_are_retried_and_auth_errors_fail_at_once() -> None:
    log: list[tuple[str, str]] = []
    script: dict[str, list[Reply]] = {
        "outline": [Fail(503), Fail(502), outline_reply(["A", "B", "C"])]
    }
    with FakeChat(script).running() as chat:
        outline = _writer(chat, log).outline(ExplainerParams(topic="T", context="C"))
        assert len(outline.scenes) == 3 and len(chat.of("outline")) == 3
        retries = [m for lv, m in log if "retrying in" in m]
        assert len(retries) == 2 and "attempt 1/3" in retries[0]
    with FakeChat({"outline": [outline_reply(["A", "B", "C"])]}, api_key="right").running() as chat:
        with pytest.raises(ChatError, match="LLM_API_KEY") as err:
            _writer(chat, key="wrong").outline(ExplainerParams(topic="T", context="C"))
        assert not err.value.recoverable and len(chat.requests) == 1


def test_sidecar_shapes_are_json_serialisable() -> None:
    p = ExplainerParams(topic="T", context="C.", scene_count=3)
    writer = OfflineWriter()
    outline = writer.outline(p)
    json.dumps(outline.to_dict())
    json.dumps(writer.scene_plan(p, outline, 1).to_dict())


# --------------------------------------------------------------------- the engine's loading


def test_the_engine_loads_the_pipeline_on_first_use_with_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.engine_helpers import mock_engine
    from wan_desktop.engine import EngineError, JobKind, JobSpec
    from wan_desktop.explainer import ExplainerPipeline

    monkeypatch.setenv("DEFAULT_QUALITY", "4k")
    engine = mock_engine(tmp_path)
    try:
        with pytest.raises(EngineError, match="misconfigured: DEFAULT_QUALITY='4k'"):
            engine.submit(JobSpec(kind=JobKind.explainer, params={"topic": "T"}))
        monkeypatch.setenv("DEFAULT_QUALITY", "low")
        with pytest.raises(InvalidInputError) as err:
            engine.submit(JobSpec(kind=JobKind.explainer, params={"topic": "T"}))
        assert set(err.value.errors) == {"context"}
        pipeline = engine.pipeline(JobKind.explainer)
        assert isinstance(pipeline, ExplainerPipeline)
        assert pipeline.settings.default_quality == "low"
    finally:
        engine.shutdown()
