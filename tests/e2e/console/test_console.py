"""The web console in a real browser (Debian's chromium, headless, driven by Playwright) on
the session mesh's gateway: signed in by `fenlei ui`, it classifies and marks the words
the API's explanation names, uploads and trains and watches the job succeed, shows the
report's confusion matrix as the API has it, promotes a version as an admin while a viewer
is refused, lists a model's experiments with their arms and starts, re-weights and ends one,
shows two versions' reports side by side and a tuning job's trials, the configuration
history and (to admins) the deny list, pages long lists and keeps what was typed when the
language changes. A screenshot of each page goes to the test's directory and to
/tmp/console-shots/."""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from fenlei.local.mesh import LocalMesh

CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/debian-packages.sh); never `playwright install`
SHOTS = Path("/tmp/console-shots")
LABELS = ("negative", "positive", "news")  # the session corpus's label names, by index
# What the preprocessor puts in front of a character n-gram and of a tag (fenlei.preprocessor.core).
CHAR_MARK, TAG_MARK = "§", "¶"
JOB_GUARD_MS = 300_000  # a hang guard for a small training job, not a speed assertion


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def gateway(mesh) -> str:
    return f"http://{mesh.address('gateway')}"


@pytest.fixture(scope="module")
def rest(mesh, gateway) -> Callable[..., Any]:
    """rest(path, role, body=None, method=None) → the JSON answer of the public REST API."""
    authority = LocalMesh(mesh.home).authority()
    tokens = {role: authority.mint(role, ttl_seconds=3600, subject=f"console-{role}") for role in ("viewer", "trainer", "admin")}

    def call(path: str, role: str = "viewer", body: Any = None, method: str | None = None) -> Any:
        request = urllib.request.Request(
            gateway + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method or ("GET" if body is None else "POST"),
            headers={"authorization": f"Bearer {tokens[role]}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)

    return call


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def console(mesh, tools, browser: Browser) -> Iterator[Callable[..., Page]]:
    """console(role, language) → a page of the console signed in as `fenlei ui` does it.
    Every page fails the test on a script error."""
    contexts = []
    errors: list[str] = []

    def open_console(role: str = "viewer", language: str = "en") -> Page:
        signed_in = tools.cli(mesh.home, "ui", "--print", "--role", role, timeout=60)
        assert signed_in.returncode == 0, signed_in.stderr
        url = signed_in.stdout.strip()
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale={"en": "en-US", "zh": "zh-CN"}[language])
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_selector("#who:not(:empty)")
        return page

    try:
        yield open_console
    finally:
        for context in contexts:
            context.close()
        assert not errors, errors


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def named(lines: list[str]) -> str:
    """Corpus lines (text<TAB>label index) with their label names."""
    return "".join(f"{text}\t{LABELS[int(index)]}\n" for text, index in (line.split("\t") for line in lines))


def surface(feature: str) -> str:
    """The text a term stands for: a character n-gram without its mark, a word n-gram's words
    joined; a tag has none."""
    if TAG_MARK in feature:
        return ""
    return feature.removeprefix(CHAR_MARK) if feature.startswith(CHAR_MARK) else feature.replace(" ", "")


def test_the_gateway_serves_the_console_and_leads_there(gateway) -> None:
    opener = urllib.request.build_opener(NoRedirect)
    for path in ("/", "/ui"):
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(gateway + path, timeout=30)
        assert redirect.value.code == 302 and redirect.value.headers["location"].endswith("/ui/"), path
    for path, content_type in (("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/console.css", "text/css")):
        with opener.open(gateway + path, timeout=30) as answer:  # no token
            assert answer.status == 200 and answer.headers["content-type"].startswith(content_type), path
            assert answer.read(), path


def test_fenlei_ui_signs_in_through_the_fragment_and_the_page_drops_it(console, gateway) -> None:
    page = console("trainer", "zh")
    assert page.url == f"{gateway}/ui/"  # the token left the address bar (and the history) at once
    assert page.evaluate("sessionStorage.getItem('fenlei.token')").count(".") == 2
    assert "训练者" in page.inner_text("#who")
    assert page.inner_text("#nav") == "分类\n数据集与训练\n报告\n模型\n服务"
    page.select_option("#language", "en")
    assert page.inner_text("#nav") == "Classify\nDatasets & training\nReports\nModels\nServices"
    tables = page.evaluate(
        "import('./i18n.js').then(({STRINGS}) => Object.fromEntries(Object.entries(STRINGS).map(([l, s]) => [l, Object.keys(s).sort()])))"
    )
    assert tables["zh"] == tables["en"]  # every string in both languages
    page.click("#sign-out")
    page.wait_for_selector("form.sign-in")
    assert page.evaluate("sessionStorage.getItem('fenlei.token')") is None


def test_classify_marks_the_words_the_explanation_names(console, rest, mesh, tmp_path) -> None:
    negative = [line.split("\t")[0] for line in mesh.test_file.read_text(encoding="utf-8").splitlines() if line.endswith("\t0")]
    text = next(t for t in negative if 12 <= len(t) <= 60)
    page = console("viewer", "zh")
    page.wait_for_selector("#model option[value=reviews]", state="attached")
    page.select_option("#model", "reviews")
    page.fill("#text", text)
    page.fill("#explain", "12")
    page.click("#classify")
    page.wait_for_selector("#classify-result .marked-text")

    answer = rest("/v1/classify", body={"text": text, "model": "reviews", "topK": 3, "explain": 12})
    shown = page.eval_on_selector_all("svg.labels .bar", "bars => bars.map(b => b.dataset.label)")
    assert shown == [label["label"] for label in answer["labels"]]
    pushing = {c["feature"] for c in answer["explanation"] if c["weight"] > 0}
    marks = page.eval_on_selector_all("mark", "marks => marks.map(m => [m.textContent, JSON.parse(m.dataset.features)])")
    marked = {feature for _, features in marks for feature in features}
    assert marked and marked <= pushing
    # every pushing term spelled as in the text is marked, on text that holds it
    literal = {feature for feature in pushing if surface(feature) and surface(feature) in text}
    assert literal and literal <= marked
    for mark_text, features in marks:
        assert mark_text in text and all(mark_text in surface(f) or surface(f) in text for f in features)

    tokens = rest(
        "/v1/segmenter:segment", body={"documents": [{"id": "0", "text": text}], "model": {"name": "reviews", "version": answer["version"]}}
    )
    assert page.eval_on_selector_all(".tokens .token", "ts => ts.map(t => t.textContent)") == tokens["documents"][0]["tokens"]
    screenshot(page, tmp_path, "classify")


def test_upload_train_watch_and_read_the_report(console, rest, corpus, tmp_path) -> None:
    page = console("trainer")
    page.evaluate("location.hash = '#/train'")
    bad = tmp_path / "bad.tsv"
    bad.write_text("好评如潮\tpositive\n没有制表符的一行\n差评\tnegative\n又一行没有标签\n", encoding="utf-8")
    page.set_input_files("#dataset-file", bad)
    page.click("#upload")
    page.wait_for_selector("#upload-result .problems")
    assert page.eval_on_selector_all(".problems li", "items => items.map(i => Number(i.dataset.line))") == [2, 4]
    assert "found no tab" in page.inner_text(".problems")

    small = tmp_path / "small.tsv"
    small.write_text(named(corpus.train.read_text(encoding="utf-8").splitlines()[:240]), encoding="utf-8")
    page.set_input_files("#dataset-file", small)
    page.fill("#dataset-name", "console-small")
    page.click("#upload")
    dataset = page.wait_for_selector("#upload-result .done").get_attribute("data-dataset")
    assert rest(f"/v1/datasets/{dataset}")["dataset"]["documents"] == "240"

    page.fill("#job-model", "console-trained")
    page.select_option("#job-dataset", dataset)
    page.click("#start-job")
    job = page.wait_for_selector("#job").get_attribute("data-job")
    page.wait_for_selector("#job[data-state=succeeded]", timeout=JOB_GUARD_MS)
    assert "succeeded" in page.inner_text("#job-events")  # the events arrived as the job went
    assert rest(f"/v1/jobs/{job}")["job"]["state"] == "JOB_STATE_SUCCEEDED"
    screenshot(page, tmp_path, "train")

    page.click("#job-report")
    page.wait_for_selector("svg.heatmap")
    report = rest(f"/v1/jobs/{job}/report")["report"]
    cells = page.eval_on_selector_all(
        "svg.heatmap .cell", "cells => cells.map(c => [Number(c.dataset.row), Number(c.dataset.column), Number(c.dataset.count)])"
    )
    expected = [[r, c, int(count)] for r, row in enumerate(report["confusion"]) for c, count in enumerate(row["counts"])]
    assert sorted(cells) == expected
    assert float(page.get_attribute("#accuracy", "data-value")) == pytest.approx(report["accuracy"])
    assert float(page.get_attribute("#macro-f1", "data-value")) == pytest.approx(report["macroF1"])
    mistakes = report["misclassified"]
    assert mistakes, "the report has no sample of mistakes to open"
    labels = report["labels"]
    first = mistakes[0]
    row, column = labels.index(first["label"]), labels.index(first["predicted"])
    page.click(f"svg.heatmap .cell[data-row='{row}'][data-column='{column}']")
    opened = page.wait_for_selector("#examples")
    listed = [item.split(" (")[0] for item in page.eval_on_selector_all("#examples li", "items => items.map(i => i.textContent)")]
    assert opened.get_attribute("data-label") == first["label"] and opened.get_attribute("data-predicted") == first["predicted"]
    assert listed == [m["text"] for m in mistakes if (m["label"], m["predicted"]) == (first["label"], first["predicted"])]
    screenshot(page, tmp_path, "report")


def test_cancel_a_job_from_its_page(console, rest, corpus, tmp_path) -> None:
    lines = named(corpus.train.read_text(encoding="utf-8").splitlines()[240:480])
    dataset = rest(
        "/v1/datasets",
        "trainer",
        [{"name": "console-cancel", "fileName": "cancel.tsv", "chunk": base64.b64encode(lines.encode("utf-8")).decode()}],
    )["dataset"]["id"]
    page = console("trainer")
    page.evaluate("location.hash = '#/train'")
    page.wait_for_selector(f"#job-dataset option[value='{dataset}']", state="attached")
    page.fill("#job-model", "console-cancelled")
    page.select_option("#job-dataset", dataset)
    page.click("#start-job")
    job = page.wait_for_selector("#job").get_attribute("data-job")
    page.click("#cancel-job")
    page.wait_for_selector("#job[data-state=cancelled]", timeout=JOB_GUARD_MS)
    assert rest(f"/v1/jobs/{job}")["job"]["state"] == "JOB_STATE_CANCELLED"


def test_a_csv_upload_names_its_columns_and_its_integer_labels(console, rest, corpus, tmp_path) -> None:
    lines = corpus.train.read_text(encoding="utf-8").splitlines()[1200:1260]
    data = tmp_path / "columns.csv"
    rows = "".join('"{}",{}\n'.format(text.replace('"', '""'), index) for text, index in (line.split("\t") for line in lines))
    data.write_text("review,stars\n" + rows, encoding="utf-8")
    page = console("trainer")
    page.evaluate("location.hash = '#/train'")
    page.set_input_files("#dataset-file", data)
    page.click("#upload")  # the default columns, text and label, are not in the file: refused, nothing stored
    assert "text" in page.wait_for_selector("#upload-result .error").inner_text()

    page.click("#dataset-options summary")
    page.select_option("#dataset-format", "DATASET_FORMAT_CSV")
    page.fill("#dataset-text-column", "review")
    page.fill("#dataset-label-column", "stars")
    page.fill("#dataset-label-names", "\n".join(LABELS))
    page.click("#upload")
    dataset = page.wait_for_selector("#upload-result .done").get_attribute("data-dataset")
    stored = rest(f"/v1/datasets/{dataset}")["dataset"]
    expected: dict[str, int] = {}
    for line in lines:
        label = LABELS[int(line.split("\t")[1])]
        expected[label] = expected.get(label, 0) + 1
    assert {label: int(count) for label, count in stored["labelCounts"].items()} == expected
    assert stored["format"] == "DATASET_FORMAT_CSV" and stored["fileName"] == "columns.csv"
    # the form kept what was chosen, for the next file
    assert (page.input_value("#dataset-text-column"), page.input_value("#dataset-label-column")) == ("review", "stars")


def test_an_admin_promotes_and_a_viewer_is_refused_with_the_reason(console, rest, mesh, tools, corpus, tmp_path) -> None:
    data = tmp_path / "models.tsv"
    data.write_text(named(corpus.train.read_text(encoding="utf-8").splitlines()[480:720]), encoding="utf-8")
    trained = tools.cli(mesh.home, "train", data, "--name", "console-models", timeout=600)
    assert trained.returncode == 0, trained.stderr

    viewer = console("viewer")
    viewer.evaluate("location.hash = '#/models/console-models'")
    viewer.click("table.versions tr[data-version=v1] button.promote")
    refusal = viewer.wait_for_selector("#models-notice .error").inner_text()
    assert "viewer" in refusal and "admin" in refusal and "RBAC: access denied" in refusal  # the gateway's words, explained
    assert rest("/v1/models/console-models/versions/v1")["version"]["aliases"] == []
    lineage = rest("/v1/models/console-models/versions/v1")["version"]["lineage"]
    row = viewer.wait_for_selector("table.lineage tr[data-version=v1]")
    assert row.get_attribute("data-dataset-sha256") == lineage["datasetSha256"]
    assert viewer.get_attribute("table.lineage tr[data-version=v1] code.digest", "title") == lineage["datasetSha256"]
    assert lineage["datasetSource"] in row.inner_text() and lineage["codeVersion"] in row.inner_text()
    screenshot(viewer, tmp_path, "models-viewer-refused")

    admin = console("admin")
    admin.evaluate("location.hash = '#/models/console-models'")
    admin.fill("#reason", "checked in the console test")
    admin.click("table.versions tr[data-version=v1] button.promote")
    admin.wait_for_selector("#model-detail .done")
    assert rest("/v1/models/console-models/versions/production")["version"]["version"] == "v1"
    assert admin.inner_text("table.versions tr[data-version=v1] .alias") == "production"
    history = rest("/v1/models/console-models/history")["moves"]
    assert [(m["alias"], m["toVersion"], m["reason"]) for m in history] == [("production", "v1", "checked in the console test")]

    arms = [{"name": "a", "target": "v1", "weight": 3}, {"name": "b", "target": "production", "weight": 1}]
    rest(
        "/v1/experiments", "admin", {"name": "console-ab", "model": "console-models", "arms": arms, "description": "two arms, one version"}
    )
    admin.reload()
    admin.wait_for_selector("#experiments [data-experiment=console-ab]")
    shown = admin.eval_on_selector_all(
        "[data-experiment=console-ab] tr[data-arm]",
        "rows => rows.map(r => [r.dataset.arm, r.children[1].textContent, r.querySelector('.weight').textContent])",
    )
    assert shown == [["a", "v1 → v1", "75.0 %"], ["b", "production → v1", "25.0 %"]]
    screenshot(admin, tmp_path, "models")


def taken(rest: Callable[..., Any], feedback: dict[str, str]) -> bool:
    """Whether the registry took the feedback: not before the pipeline's record of the answer reached it."""
    try:
        return bool(rest("/v1/feedback", body=feedback)["experiment"])
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        return False


def signed_in_as(page: Page) -> str:
    return page.evaluate("import('./api.js').then(({ claims }) => claims().subject)")


def shown_history(page: Page) -> list[str]:
    return page.eval_on_selector_all("#config-history tr[data-sequence]", "rows => rows.map(r => r.dataset.sequence)")


def test_the_services_page_shows_the_configuration_and_an_admin_keeps_the_deny_list(console, rest, tmp_path) -> None:
    for round in range(11):  # 22 changes: more than a page of history
        added = rest("/v1/config/deny", "admin", {"subject": f"console-paging-{round}", "reason": "fills the history"})
        rest(f"/v1/config/deny/{added['rule']['id']}", "admin", method="DELETE")
    admin = console("admin")
    admin.evaluate("location.hash = '#/services'")
    admin.wait_for_selector("#config-history tr[data-sequence]")
    scenarios = next(s["value"] for s in rest("/v1/config")["settings"] if s["key"] == "mesh.scenarios")
    assert admin.get_attribute("#active-scenario", "data-value") == scenarios
    history = [c["sequence"] for c in rest("/v1/config/history?limit=200")["changes"]]
    assert shown_history(admin) == history[:20]
    assert admin.inner_text("#config-history .pager span") == f"Page 1 of {-(-len(history) // 20)}"
    admin.click("#config-history .pager .next")
    admin.wait_for_selector("#config-history .pager[data-page='2']")
    assert shown_history(admin) == history[20:40]

    admin.select_option("#deny-kind", "subject")
    admin.fill("#deny-caller", "console-mallory")
    admin.fill("#deny-reason", "seen scraping in the console test")
    admin.click("#add-deny")
    row = admin.wait_for_selector("#deny tr[data-caller=console-mallory]")
    rule = next(r for r in rest("/v1/config/deny", "admin")["rules"] if r.get("subject") == "console-mallory")
    assert (rule["reason"], rule["createdBy"], row.get_attribute("data-rule")) == (
        "seen scraping in the console test",
        signed_in_as(admin),
        rule["id"],
    )
    newest = rest("/v1/config/history?limit=1")["changes"][0]
    assert newest["key"] == f"deny.{rule['id']}" and shown_history(admin)[0] == newest["sequence"]
    screenshot(admin, tmp_path, "services-config")
    admin.click(f"#deny tr[data-rule='{rule['id']}'] .remove-deny")
    admin.wait_for_selector("#deny tr[data-caller=console-mallory]", state="detached")
    assert not any(r.get("subject") == "console-mallory" for r in rest("/v1/config/deny", "admin")["rules"])
    removed = rest("/v1/config/history?limit=1")["changes"][0]
    assert (removed["key"], removed["reason"]) == (f"deny.{rule['id']}", "let in again in the console")

    # the scenarios offered are the configuration's choices; the session mesh has no sidecars to
    # carry one: refused with the reason, the choice kept
    choices = next(s["choices"] for s in rest("/v1/config")["settings"] if s["key"] == "mesh.scenarios")
    assert "fault-delay-classifier" in choices
    assert admin.eval_on_selector_all("#scenarios input.scenario", "boxes => boxes.map(b => b.value)") == choices
    admin.check("#scenarios input[value=fault-delay-classifier]")
    admin.click("#set-scenarios")
    assert "without sidecars" in admin.wait_for_selector("#scenario .error").inner_text()
    assert admin.is_checked("#scenarios input[value=fault-delay-classifier]")
    assert next(s["value"] for s in rest("/v1/config")["settings"] if s["key"] == "mesh.scenarios") == scenarios

    viewer = console("viewer")
    viewer.evaluate("location.hash = '#/services'")
    viewer.wait_for_selector("#config-history tr[data-sequence]")
    assert shown_history(viewer) == [c["sequence"] for c in rest("/v1/config/history?limit=20")["changes"]]
    assert viewer.is_visible("#deny-admin-only")
    assert viewer.query_selector_all("#deny-form, #deny tr[data-rule], #scenario-form") == []


def test_an_admin_starts_reweights_and_ends_an_experiment(console, rest, mesh, tools, corpus, tmp_path) -> None:
    data = tmp_path / "experiments.tsv"
    data.write_text(named(corpus.train.read_text(encoding="utf-8").splitlines()[720:960]), encoding="utf-8")
    trained = tools.cli(mesh.home, "train", data, "--name", "console-experiments", timeout=600)
    assert trained.returncode == 0, trained.stderr
    experiment = "[data-experiment=console-exp]"

    viewer = console("viewer")
    viewer.evaluate("location.hash = '#/models/console-experiments'")
    viewer.wait_for_selector("#experiments .hint")
    assert viewer.query_selector_all("#experiment-form, .experiment-controls") == []

    admin = console("admin")
    admin.evaluate("location.hash = '#/models/console-experiments'")
    admin.fill("#experiment-name", "console-exp")
    admin.fill("#experiment-description", "started in the console")
    admin.fill("#experiment-arms .arm:nth-child(1) .arm-weight", "3")
    admin.click("#start-experiment")
    admin.wait_for_selector(f"{experiment}[data-running=true]")
    started = rest("/v1/experiments/console-exp")["experiment"]
    assert [(a["name"], a["target"], a["weight"]) for a in started["arms"]] == [("control", "v1", 3), ("candidate", "v1", 1)]
    assert started["createdBy"] == signed_in_as(admin) and started["description"] == "started in the console"
    traffic = f"{experiment} tr[data-arm] .weight"
    assert admin.eval_on_selector_all(traffic, "cells => cells.map(c => c.textContent)") == ["75.0 %", "25.0 %"]

    admin.fill(f"{experiment} .arm-weight[data-arm=candidate]", "3")
    admin.fill(f"{experiment} .experiment-reason", "even it out")
    admin.click(f"{experiment} .reweight")
    notice = admin.wait_for_selector("#experiments-notice .done:has-text('Weights of')").inner_text()
    assert [a["weight"] for a in rest("/v1/experiments/console-exp")["experiment"]["arms"]] == [3, 3]
    change = rest("/v1/config/history?key=experiments.console-exp")["changes"][0]  # through the live configuration: recorded
    assert (change["who"], change["reason"]) == (signed_in_as(admin), "even it out") and change["after"] in notice
    assert admin.eval_on_selector_all(traffic, "cells => cells.map(c => c.textContent)") == ["50.0 %", "50.0 %"]

    # feedback on what the arms answered fills each arm's online confusion matrix
    for line in mesh.test_file.read_text(encoding="utf-8").splitlines()[:12]:
        text, index = line.split("\t")
        answered = rest("/v1/classify", body={"text": text, "model": "console-experiments"})
        feedback = {"requestId": answered["requestId"], "label": LABELS[int(index)]}
        tools.wait_for(functools.partial(taken, rest, feedback), "the prediction recorded (the pipeline records in the background)")
    admin.reload()
    admin.wait_for_selector(f"{experiment} .arm-confusion")
    scores = {score["arm"]: score for score in rest("/v1/experiments/console-exp")["experiment"]["scores"]}
    assert sum(int(score["feedback"]) for score in scores.values()) == 12
    for arm in ("control", "candidate"):
        confusion = scores.get(arm, {}).get("confusion", {})
        labels = sorted({truth for truth in confusion} | {p for row in confusion.values() for p in row["counts"]})
        cells = admin.eval_on_selector_all(
            f"{experiment} .arm-confusion[data-arm={arm}] .cell",
            "cells => cells.map(c => [Number(c.dataset.row), Number(c.dataset.column), Number(c.dataset.count)])",
        )
        expected = [
            [r, c, int(confusion.get(truth, {}).get("counts", {}).get(predicted, 0))]
            for r, truth in enumerate(labels)
            for c, predicted in enumerate(labels)
        ]
        assert cells == expected, arm
    screenshot(admin, tmp_path, "models-experiment")

    admin.select_option(f"{experiment} .promote-arm", "candidate")
    admin.fill(f"{experiment} .experiment-reason", "the candidate is as good")
    admin.click(f"{experiment} .end-experiment")
    admin.wait_for_selector(f"{experiment}[data-running=false]")
    assert rest("/v1/experiments/console-exp")["experiment"]["running"] is False
    assert rest("/v1/models/console-experiments/versions/production")["version"]["version"] == "v1"
    assert admin.query_selector(f"{experiment} .experiment-controls") is None and admin.is_visible("#experiment-form")


def test_switching_the_language_keeps_what_was_typed(console) -> None:
    page = console("viewer", "zh")
    page.wait_for_selector("#model option[value=reviews]", state="attached")
    page.select_option("#model", "reviews")
    page.wait_for_selector("#version option[value=v1]", state="attached")
    page.select_option("#version", "v1")
    page.fill("#text", "这家餐厅的菜很好吃")
    page.fill("#top-k", "2")
    page.select_option("#language", "en")
    assert page.inner_text("#classify") == "Classify"
    page.wait_for_selector("#version option[value=v1]", state="attached")  # the versions come from the API again
    assert [page.input_value(f) for f in ("#model", "#version", "#text", "#top-k")] == ["reviews", "v1", "这家餐厅的菜很好吃", "2"]

    page.evaluate("location.hash = '#/train'")
    page.fill("#job-model", "typed-before-the-switch")
    page.fill("#job-folds", "3")
    page.check("#job-tune")
    page.select_option("#language", "zh")
    assert page.inner_text("#start-job") == "开始训练"
    assert (page.input_value("#job-model"), page.input_value("#job-folds"), page.is_checked("#job-tune")) == (
        "typed-before-the-switch",
        "3",
        True,
    )


def test_two_versions_side_by_side(console, rest, second_version, tmp_path) -> None:
    name, first, second = second_version.name, second_version.first, second_version.second
    page = console("viewer")
    page.evaluate(f"location.hash = '#/reports/model/{name}/{first}'")
    page.wait_for_selector(f"#compare-with option[value={second}]", state="attached")
    page.select_option("#compare-with", second)
    page.wait_for_selector(".side-by-side")
    assert page.url.endswith(f"#/reports/compare/{name}/{first}/{second}")
    reports = [rest(f"/v1/models/{name}/versions/{v}")["version"]["report"] for v in (first, second)]
    for side, report in enumerate(reports):
        assert float(page.get_attribute(f"#side-{side}-accuracy", "data-value")) == pytest.approx(report["accuracy"])
        counts = page.eval_on_selector_all(f"[data-side='{side}'] svg.heatmap .cell", "cells => cells.map(c => Number(c.dataset.count))")
        assert counts == [int(count) for row in report["confusion"] for count in row["counts"]]
    f1 = [{c["label"]: c["f1"] for c in report["classes"]} for report in reports]
    rows = page.eval_on_selector_all(
        ".compare-classes tr[data-label]", "rows => rows.map(r => [r.dataset.label, ...[...r.children].slice(1).map(c => c.textContent)])"
    )
    assert rows == [[label, f"{f1[0][label]:.3f}", f"{f1[1][label]:.3f}", f"{f1[1][label] - f1[0][label]:.3f}"] for label in f1[0]]
    screenshot(page, tmp_path, "reports-side-by-side")


def test_a_tuning_job_started_in_the_console_searches_what_was_chosen(console, rest, corpus, tmp_path) -> None:
    lines = named(corpus.train.read_text(encoding="utf-8").splitlines()[960:1200])
    dataset = rest(
        "/v1/datasets",
        "trainer",
        [{"name": "console-tuning", "fileName": "tuning.tsv", "chunk": base64.b64encode(lines.encode("utf-8")).decode()}],
    )["dataset"]["id"]
    page = console("trainer")
    page.evaluate("location.hash = '#/train'")
    page.wait_for_selector(f"#job-dataset option[value='{dataset}']", state="attached")
    page.fill("#job-model", "console-tuned")
    page.select_option("#job-dataset", dataset)
    assert page.is_hidden("#search-space")
    page.check("#job-tune")
    for algorithm in ("ALGORITHM_LINEAR_SVM", "ALGORITHM_COMPLEMENT_NB"):
        page.check(f"#search-space [data-field=algorithms] input[value={algorithm}]")
    page.fill("#space-word-ngrams", "1-1, one to two")
    page.click("#start-job")  # refused in the page, the form kept
    assert "one to two" in page.wait_for_selector("#job-result .error").inner_text()
    assert page.is_checked("#search-space input[value=ALGORITHM_COMPLEMENT_NB]")
    page.fill("#space-word-ngrams", "1-1")
    page.fill("#space-folds", "2")
    page.fill("#space-max-trials", "2")
    page.click("#start-job")
    job = page.wait_for_selector("#job").get_attribute("data-job")
    asked = rest(f"/v1/jobs/{job}")["job"]
    chosen = {field: value for field, value in asked["space"].items() if value}  # the gateway prints empty lists too
    assert asked["tune"] is True and chosen == {
        "algorithms": ["ALGORITHM_LINEAR_SVM", "ALGORITHM_COMPLEMENT_NB"],
        "wordNgrams": [{"min": 1, "max": 1}],
        "folds": 2,
        "maxTrials": 2,
    }
    page.wait_for_selector("#job[data-state=succeeded]", timeout=JOB_GUARD_MS)
    trials = rest(f"/v1/jobs/{job}/report")["report"]["trials"]
    assert len(trials) == 2
    assert {t["changes"]["classifier"]["algorithm"] for t in trials} <= {"ALGORITHM_LINEAR_SVM", "ALGORITHM_COMPLEMENT_NB"}
    assert all(t["changes"]["preprocessor"]["word_ngrams"] == {"min": 1, "max": 1} for t in trials)

    page.click("#job-report")
    page.wait_for_selector("#trials tr[data-trial]")
    shown = page.eval_on_selector_all(
        "#trials tr[data-trial]", "rows => rows.map(r => [Number(r.dataset.trial), Number(r.dataset.score), r.className])"
    )
    assert shown == [[t["number"], pytest.approx(t["score"]), "best" if t.get("best") else ""] for t in trials]
    assert sum(row[2] == "best" for row in shown) == 1
    screenshot(page, tmp_path, "report-trials")


def test_the_services_page_sees_a_stage_go_down_and_come_back(console, rest, mesh, tools, tmp_path) -> None:
    """Last of the module: it kills the session mesh's segmenter (the supervisor starts it
    again) and waits until classification works again."""
    rest("/v1/classify", body={"text": "服务页面的测试请求", "model": "reviews"})  # a trace to open
    page = console("viewer")
    page.evaluate("location.hash = '#/services'")
    row = "tr[data-process=segmenter]"
    page.wait_for_selector(f"{row}[data-state=running]")
    restarts = int(page.get_attribute(row, "data-restarts"))
    assert (
        page.eval_on_selector_all("svg.topology .edge", "edges => edges.map(e => e.dataset.caller + '>' + e.dataset.callee)").count(
            "pipeline>segmenter"
        )
        == 1
    )

    os.kill(tools.read_state(mesh.home)["segmenter"]["pid"], signal.SIGKILL)
    page.wait_for_selector(f"{row}[data-restarts='{restarts + 1}'][data-state=running]", timeout=JOB_GUARD_MS)
    segmenter = next(p for p in rest("/v1/mesh/status")["processes"] if p["name"] == "segmenter")
    assert segmenter["lastExit"] and page.inner_text(f"{row} td:nth-child(6)") == segmenter["lastExit"]
    tools.wait_for(lambda: tools.health_status(tools.read_state(mesh.home)["segmenter"]["address"]) == "SERVING", "the segmenter back")

    def classifies() -> bool:
        try:
            return bool(rest("/v1/classify", body={"text": "又能分类了", "model": "reviews"})["labels"])
        except urllib.error.HTTPError:
            return False

    tools.wait_for(classifies, "classification through the restarted segmenter", timeout=tools.HANG_GUARD)

    # more traces than a page: the page turned to stays turned as the list refreshes
    for number in range(12):
        rest("/v1/classify", body={"text": f"第{number}条慢请求的候选", "model": "reviews"})
    page.wait_for_selector("#slow-traces .pager")
    page.click("#slow-traces .pager .next")
    page.wait_for_selector("#slow-traces .pager[data-page='2']")
    page.evaluate(
        """() => new Promise((redrawn) => new MutationObserver((_, observer) => { observer.disconnect(); redrawn(); })
            .observe(document.querySelector('#slow-traces'), { childList: true }))"""
    )
    assert page.get_attribute("#slow-traces .pager", "data-page") == "2"
    page.click("#slow-traces .pager .previous")

    link = page.wait_for_selector("#slow-traces a[data-trace]")
    trace = rest(f"/v1/traces/{link.get_attribute('data-trace')}")
    link.click()
    page.wait_for_selector("svg.waterfall .span")
    shown = page.eval_on_selector_all("svg.waterfall .span", "spans => spans.map(s => s.dataset.service)")
    assert shown == [span["service"] for span in trace["spans"]]
    screenshot(page, tmp_path, "services")
    mesh.state.update(tools.read_state(mesh.home))  # the session's record of its processes, for the tests after this one
