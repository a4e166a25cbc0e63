# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The web demo (`qface serve`, `app.py`): its handlers in-process, and the real page in headless Chromium.

The browser test starts `python -m modeling_qface.webdemo.serve` on a free loopback port, uploads a sample photo through
the page's file input, clicks a sample photo, and checks the page against the pipeline run in this process.
It needs Debian's `chromium` and `chromium-driver` (`make test` installs them where it can: root, apt-get) and the
`selenium` package. Without them it is skipped with the reason, unless `QFACE_REQUIRE_BROWSER=1` is set: then it
fails with that reason (`.ci/run` sets it, so CI always runs it). The photos come from
`modeling_qface/samples/photos.py` (pip/npm downloads, cached).
Set `QFACE_SCREENSHOT_DIR` to keep the browser test's screenshots.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import matplotlib.figure
import pandas as pd
import pytest
from PIL import Image

from modeling_qface.outputs.dataframe import dataframe_columns
from modeling_qface.registry import DEFAULT_MODEL_DIR
from modeling_qface.samples.photos import SAMPLE_PHOTOS
from modeling_qface.webdemo import serve
from modeling_qface.webdemo.serve import TABLE_COLUMNS, build_demo, build_parser, load_model
from tests.browser import chromium
from tests.browser.server import free_loopback_port, running_server

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = "qface-tiny"
UPLOADED_PHOTO = "t1.jpg"  # uploaded through the file input
CLICKED_PHOTO = "multi_face.jpg"  # picked from the sample photos
NO_FACE_PHOTO = "free-mountain-vector-01.jpg"
BROWSER_WAIT_S = 90  # a bound for a failure, not a speed claim: a loaded 2-core CI machine is slow


@pytest.fixture(scope="module")
def demo(sample_photos):
    return build_demo(PRESET, sample_photos_dir=next(iter(sample_photos.values())).parent)


@pytest.fixture(scope="module")
def app(demo):
    return demo.qface_app


def expected_rows(app, photo: Path) -> pd.DataFrame:
    """The table the page must show for `photo`: the pipeline run in this process on the same file."""
    return serve.summary_table(app.pipe(str(photo)))


# ------------------------------------------------------------------------------------------ handlers, no browser


def test_handler_lists_every_face_the_pipeline_finds(app, sample_photos):
    photo = sample_photos[UPLOADED_PHOTO]
    faces = app.pipe(str(photo), output_attentions=True)
    assert len(faces) == SAMPLE_PHOTOS[UPLOADED_PHOTO].face_count == 6

    annotated, table, status, selector, state, csv_button, attention, stages = app.analyze(str(photo))

    assert status == "Found **6** faces."
    assert list(table.columns) == TABLE_COLUMNS
    assert table["face"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table["expression"].tolist() == [
        f"{face['expression']['label']} ({face['expression']['scores'][face['expression']['label']]:.2f})"
        for face in faces
    ]
    assert table["box (x1, y1, x2, y2)"].tolist() == [", ".join(f"{v:.0f}" for v in face["box"]) for face in faces]
    assert table["active AUs"].tolist() == [", ".join(face["au_active"]) or "none" for face in faces]
    assert isinstance(annotated, Image.Image) and annotated.size == Image.open(photo).size
    assert selector["choices"] == [f"Face {i}" for i in range(1, 7)] and selector["value"] == "Face 1"
    assert [face["box"] for face in state] == [face["box"] for face in faces]
    assert csv_button["interactive"] is True
    csv = pd.read_csv(csv_button["value"])
    assert len(csv) == 6 and csv["FaceRectX"].tolist() == pytest.approx([face["box"][0] for face in faces])
    assert list(csv.columns) == dataframe_columns(app.pipe.model.config)  # the model's tasks' columns only
    assert not csv.drop(columns="input").isna().any().any()  # an upload has no path
    assert isinstance(attention, matplotlib.figure.Figure) and isinstance(stages, matplotlib.figure.Figure)


def test_face_selector_draws_the_chosen_face(app, sample_photos):
    state = app.analyze(str(sample_photos[UPLOADED_PHOTO]))[4]
    assert app.face_figures(None, state) == (None, None)
    attention, stages = app.face_figures("Face 3", state)
    assert isinstance(attention, matplotlib.figure.Figure) and isinstance(stages, matplotlib.figure.Figure)
    with pytest.raises(IndexError):
        app.face_figures("Face 7", state)


def test_handler_says_when_no_face_is_found(app, sample_photos):
    annotated, table, status, selector, state, csv_button, attention, stages = app.analyze(
        str(sample_photos[NO_FACE_PHOTO])
    )
    assert status.startswith("No face found in this photo.")
    assert table.empty and list(table.columns) == TABLE_COLUMNS
    assert annotated.size == Image.open(sample_photos[NO_FACE_PHOTO]).size  # the photo itself, nothing drawn
    assert selector["choices"] == [] and selector["value"] is None
    assert csv_button == {"__type__": "update", "value": None, "interactive": False}
    assert (state, attention, stages) == (None, None, None)


@pytest.mark.parametrize(
    "content, problem",
    [(b"this is not a photo", "not an image file that Pillow can read"), (b"", "empty")],
)
def test_handler_names_an_unreadable_upload(app, tmp_path, content, problem):
    upload = tmp_path / "gradio-cache-1234" / "holiday.jpg"
    upload.parent.mkdir()
    upload.write_bytes(content)
    # As Gradio passes it with preprocess=False: its cache path and the name the user uploaded.
    payload = {"path": str(upload), "orig_name": "Holiday Photo.jpg", "meta": {"_type": "gradio.FileData"}}
    annotated, table, status, *rest = app.analyze(payload)
    assert status.startswith("**Could not read the photo.** Holiday Photo.jpg")
    assert problem in status and "gradio-cache-1234" not in status
    selector, state, csv_button, attention, stages = rest
    assert annotated is None and table.empty and selector["choices"] == [] and csv_button["value"] is None
    assert (state, attention, stages) == (None, None, None)


def test_handler_names_a_truncated_photo(app, sample_photos, tmp_path):
    data = sample_photos[UPLOADED_PHOTO].read_bytes()
    upload = tmp_path / "cut.jpg"
    upload.write_bytes(data[: len(data) // 3])
    status = app.analyze(str(upload))[2]
    assert status.startswith("**Could not read the photo.** cut.jpg: damaged or truncated image data")


def test_handler_without_photo_asks_for_one(app):
    annotated, table, status, *_ = app.analyze(None)
    assert annotated is None and table.empty and "Upload a photo" in status


def test_page_warns_only_for_an_untrained_preset(demo, tmp_path):
    def warning_blocks(blocks):
        return [b for b in blocks.blocks.values() if "qface-untrained-warning" in str(getattr(b, "value", ""))]

    assert len(warning_blocks(demo)) == 1
    loaded = load_model(PRESET)
    assert not loaded.trained
    loaded.model.save_pretrained(tmp_path / "saved")
    reloaded = load_model(str(tmp_path / "saved"))
    assert reloaded.trained and reloaded.name == str(tmp_path / "saved")
    assert warning_blocks(build_demo(reloaded, sample_photos_dir=tmp_path / "no-photos")) == []


def test_page_of_the_default_model_says_what_it_is(tmp_path):
    page = build_demo(sample_photos_dir=tmp_path / "no-photos")  # no model given: the shipped demo model
    texts = [str(getattr(block, "value", "")) for block in page.blocks.values()]
    assert any("qface-demo-model-notice" in text and "not a model for real use" in text for text in texts)
    assert not any("qface-untrained-warning" in text for text in texts)


def test_load_model_names_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"'qface-huge' is neither a folder .* nor a preset \[.*'qface-tiny'"):
        load_model("qface-huge")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder has no config.json"):
        load_model(str(tmp_path / "empty"))


def test_serve_cli_binds_to_loopback_by_default_and_rejects_a_bad_model(capsys):
    args = build_parser().parse_args([])
    # The default model is the demo model shipped with the package.
    assert (args.model, args.host, args.port) == (str(DEFAULT_MODEL_DIR), "127.0.0.1", 7860)
    assert serve.main(["--model", "no-such-model"]) == 2
    assert "qface serve: --model 'no-such-model' is neither" in capsys.readouterr().err


def test_csv_writer_keeps_only_the_newest_files(app, sample_photos):
    faces = app.pipe(str(sample_photos[CLICKED_PHOTO]))
    writer = serve.CsvWriter(keep=2)
    paths = [Path(writer(faces)) for _ in range(3)]
    assert [path.exists() for path in paths] == [False, True, True]
    assert {path.name for path in paths} == {"qface_faces.csv"}  # the name the user downloads
    frame = pd.read_csv(paths[-1])
    assert frame["face"].tolist() == [0, 1, 2, 3, 4] and frame["happiness"].tolist() == pytest.approx(
        [face["expression"]["scores"]["happiness"] for face in faces]
    )


def make_browser(monkeypatch, chromium_present: bool, driver_present: bool, selenium_present: bool) -> None:
    """Whether this machine has Chromium, its driver and Selenium, decided by the test and not by the machine."""
    present = (sys.executable,)  # any executable file stands in for a found program
    monkeypatch.setattr(chromium, "CHROMIUM_CANDIDATES", present if chromium_present else ("/nonexistent/chromium",))
    monkeypatch.setattr(chromium, "DRIVER_CANDIDATES", present if driver_present else ("/nonexistent/chromedriver",))
    monkeypatch.setattr(chromium, "selenium_installed", lambda: selenium_present)


def test_missing_browser_is_a_clear_failure(monkeypatch):
    make_browser(monkeypatch, chromium_present=False, driver_present=False, selenium_present=False)
    with pytest.raises(chromium.BrowserMissingError) as missing:
        chromium.find_browser()
    assert str(missing.value) == (
        "end-to-end browser test needs chromium, chromedriver (chromium-driver), the selenium Python package: "
        "install them with `apt-get install -y --no-install-recommends chromium chromium-driver` and "
        "`pip install selenium`"
    )
    # Only what is missing is named.
    make_browser(monkeypatch, chromium_present=True, driver_present=False, selenium_present=True)
    with pytest.raises(chromium.BrowserMissingError, match=r"needs chromedriver \(chromium-driver\): install them"):
        chromium.find_browser()
    make_browser(monkeypatch, chromium_present=True, driver_present=True, selenium_present=True)
    assert chromium.find_browser() == (sys.executable, sys.executable)


@pytest.mark.parametrize("value", [None, "", "0"])
def test_missing_browser_skips_the_browser_test_by_default(monkeypatch, value):
    make_browser(monkeypatch, chromium_present=False, driver_present=True, selenium_present=True)
    if value is None:
        monkeypatch.delenv(chromium.REQUIRE_BROWSER_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(chromium.REQUIRE_BROWSER_VARIABLE, value)
    with pytest.raises(
        pytest.skip.Exception,
        match=r"needs chromium: install them .*\(set QFACE_REQUIRE_BROWSER=1 to make this a failure\)",
    ):
        chromium.require_browser()


def test_missing_browser_fails_the_browser_test_when_required(monkeypatch):
    make_browser(monkeypatch, chromium_present=False, driver_present=False, selenium_present=True)
    monkeypatch.setenv(chromium.REQUIRE_BROWSER_VARIABLE, "1")
    with pytest.raises(
        pytest.fail.Exception,
        match=r"needs chromium, chromedriver \(chromium-driver\): install "
        r"them with `apt-get install .*\(QFACE_REQUIRE_BROWSER=1: the browser test must run\)",
    ):
        chromium.require_browser()
    make_browser(monkeypatch, chromium_present=True, driver_present=True, selenium_present=True)
    assert chromium.require_browser() == (sys.executable, sys.executable)  # present: neither skips nor fails


def test_sample_photos_are_listed_by_name(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in serve.find_sample_photos(tmp_path)] == ["a.jpg", "b.png"]
    assert serve.find_sample_photos(tmp_path / "missing") == []


# ------------------------------------------------------------------------------------- the page in a real browser


def table_rows(driver) -> list[list[str]]:
    """Text of each data row of the page's face table (header row excluded)."""
    from selenium.webdriver.common.by import By

    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, "#qface-table [role=row]"):
        cells = row.find_elements(By.CSS_SELECTOR, "td, [role=gridcell]")
        if cells:
            rows.append([cell.text.strip() for cell in cells])
    return rows


def status_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "qface-status").text.strip()


def wait_until(driver, condition, what: str, log_path: Path, timeout: float = BROWSER_WAIT_S):
    """Polls `condition(driver)` until truthy; fails with what was awaited, the page status and the server log."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        pytest.fail(
            f"browser: waited {timeout} s for {what}; page status {status_text(driver)!r}; server log:\n"
            f"{log_path.read_text(errors='replace')[-3000:]}"
        )


def labelled_options(driver) -> list:
    """The open dropdown's options once every one shows its label (an empty list, falsy, until then)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        options = driver.find_elements(By.CSS_SELECTOR, "[role=option]")
        return options if options and all(option.text.strip(" ✓\n") for option in options) else []
    except StaleElementReferenceException:  # redrawn while read: try again
        return []


def page_idle(driver) -> bool:
    """No event of the page is running: every component's Gradio status tracker is hidden."""
    trackers = "[...document.querySelectorAll('[data-testid=status-tracker]')]"
    return driver.execute_script(f"return {trackers}.every(tracker => tracker.classList.contains('hide'));")


def image_loaded(driver, selector: str) -> bool:
    return driver.execute_script(
        "const img = document.querySelector(arguments[0]); return !!img && img.complete && img.naturalWidth > 0;",
        selector,
    )


def check_results(driver, app, photo: Path, log_path: Path) -> None:
    """The page shows the pipeline's faces for `photo`: status, one row per face in order, the annotated image."""
    expected = expected_rows(app, photo)
    count = len(expected)
    wait_until(
        driver,
        lambda d: status_text(d) == f"Found {count} face{'s' if count != 1 else ''}.",
        f"the result of {photo.name} ({count} faces)",
        log_path,
    )
    wait_until(driver, page_idle, f"every output of {photo.name}", log_path)
    wait_until(driver, lambda d: len(table_rows(d)) == count, f"{count} table rows", log_path)
    rows = table_rows(driver)
    # face number, box and top expression label, as computed in this process
    assert [row[0] for row in rows] == [str(n) for n in expected["face"]]
    assert [row[1] for row in rows] == expected["box (x1, y1, x2, y2)"].tolist()
    assert [row[2].split(" (")[0] for row in rows] == [e.split(" (")[0] for e in expected["expression"]]
    wait_until(driver, lambda d: image_loaded(d, "#qface-annotated img"), "the annotated image", log_path)
    size = driver.execute_script(
        "const img = document.querySelector('#qface-annotated img'); return [img.naturalWidth, img.naturalHeight];"
    )
    assert tuple(size) == Image.open(photo).size
    for plot in ("#qface-attention img", "#qface-stages img"):
        wait_until(driver, lambda d, plot=plot: image_loaded(d, plot), f"the figure {plot}", log_path)


@pytest.mark.slow
def test_page_in_headless_chromium(app, sample_photos, tmp_path):
    """Upload a photo, click a sample photo, upload a non-image: the page matches the in-process pipeline."""
    chromium.require_browser()  # in the test, not a fixture: with QFACE_REQUIRE_BROWSER=1 it is a failure, not an error
    from selenium.webdriver.common.by import By

    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = tmp_path / "server.log"
    command = [
        sys.executable,
        "-m",
        "modeling_qface.webdemo.serve",
        "--model",
        PRESET,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--sample-photos",
        str(sample_photos[CLICKED_PHOTO].parent),
    ]
    env = {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    screenshots = Path(os.environ.get("QFACE_SCREENSHOT_DIR") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)

    with running_server(command, url, log_path, env=env, cwd=REPO_ROOT), chromium.headless_chromium() as driver:
        driver.get(url)
        file_input = wait_until(
            driver,
            lambda d: d.find_element(By.CSS_SELECTOR, "#qface-photo input[type=file]"),
            "the photo upload input",
            log_path,
        )
        banner = driver.find_element(By.ID, "qface-untrained-warning")
        assert banner.is_displayed() and "Untrained model" in banner.text and PRESET in banner.text

        # 1. Upload through the file input, then press Analyze.
        file_input.send_keys(str(sample_photos[UPLOADED_PHOTO]))
        wait_until(driver, lambda d: image_loaded(d, "#qface-photo img"), "the uploaded photo's preview", log_path)
        driver.find_element(By.ID, "qface-analyze").click()
        check_results(driver, app, sample_photos[UPLOADED_PHOTO], log_path)
        assert driver.find_element(By.ID, "qface-csv").is_enabled()

        # 2. Choose another face for the figures: both figures are redrawn.
        before = {
            plot: driver.find_element(By.CSS_SELECTOR, f"{plot} img").get_attribute("src")
            for plot in ("#qface-attention", "#qface-stages")
        }
        driver.find_element(By.CSS_SELECTOR, "#qface-face input").click()
        # The options' text is filled in after the elements appear: wait for the labels, not just the elements.
        options = wait_until(driver, labelled_options, "face options with their labels", log_path)
        assert [option.text.strip(" ✓\n") for option in options] == [f"Face {n}" for n in range(1, 7)]
        options[2].click()
        wait_until(driver, page_idle, "the figures of Face 3", log_path)
        for plot, source in before.items():
            wait_until(
                driver,
                lambda d, plot=plot, source=source: (
                    image_loaded(d, f"{plot} img")
                    and d.find_element(By.CSS_SELECTOR, f"{plot} img").get_attribute("src") != source
                ),
                f"{plot} redrawn for Face 3",
                log_path,
            )
        assert driver.find_element(By.CSS_SELECTOR, "#qface-face input").get_attribute("value") == "Face 3"
        chromium.save_screenshot(driver, screenshots / "web-demo-upload.png")

        # 3. Click a sample photo: it runs at once.
        examples = driver.find_elements(By.CSS_SELECTOR, "#qface-examples button")
        clicked = [b for b in examples if b.find_elements(By.CSS_SELECTOR, f"img[src$='/{CLICKED_PHOTO}']")]
        assert len(clicked) == 1, f"expected one sample photo button for {CLICKED_PHOTO}, found {len(clicked)}"
        clicked[0].click()
        check_results(driver, app, sample_photos[CLICKED_PHOTO], log_path)

        # 4. A file that is not an image: the page says so and clears the previous results.
        not_a_photo = tmp_path / "notes.jpg"
        not_a_photo.write_bytes(b"this is not a photo")
        driver.find_element(By.CSS_SELECTOR, "#qface-photo input[type=file]").send_keys(str(not_a_photo))
        driver.find_element(By.ID, "qface-analyze").click()
        wait_until(
            driver,
            lambda d: status_text(d).startswith("Could not read the photo. notes.jpg"),
            "the unreadable-upload message",
            log_path,
        )
        wait_until(driver, lambda d: table_rows(d) == [], "an empty table", log_path)
        assert not driver.find_element(By.ID, "qface-csv").is_enabled()
        chromium.save_screenshot(driver, screenshots / "web-demo-unreadable.png")

        requested = chromium.requested_urls(driver)
        assert url in requested and len(requested) > 20  # the log did record the page's own requests
        outside = chromium.non_loopback(requested)
        assert outside == [], f"the page requested addresses outside this machine: {outside}"


def test_table_shows_a_dash_for_tasks_the_model_does_not_have():
    face = {
        "box": [1.0, 2.0, 30.0, 40.0],
        "expression": {"label": "neutral", "scores": {"neutral": 0.8}},
        "attributes": {"Male": 0.9, "Smiling": 0.1},
        "age": {"years": 30.0, "std": 4.0},
        "head_pose": {"yaw": 1.0, "pitch": -2.0, "roll": 3.0},
    }  # the demo model's tasks: no AUs
    (row,) = serve.summary_table([face]).to_dict("records")
    assert row["active AUs"] == "-" and row["top attributes"] == "Male (0.90), Smiling (0.10)"
    assert row["expression"] == "neutral (0.80)" and row["yaw / pitch / roll"] == "+1.0° / -2.0° / +3.0°"


# ------------------------------------------------------------------------------- upload limit, results clean-up

import contextlib  # noqa: E402  (the tests below were added at the end of this file)


@contextlib.contextmanager
def launched(page):
    """`page` served on a free loopback port in this process (no browser); closed on exit. Yields its URL."""
    port = free_loopback_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, share=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        page.close(verbose=False)


def upload(url: str, size: int) -> int:
    """HTTP status of uploading a `size`-byte file as the page's upload box does."""
    import httpx

    files = {"files": ("photo.jpg", b"\xff" * size, "image/jpeg")}
    with httpx.Client(trust_env=False, timeout=30) as client:  # trust_env=False: no proxy for loopback
        return client.post(f"{url}/gradio_api/upload", files=files).status_code


def test_uploads_above_the_size_limit_are_refused(tmp_path):
    page = build_demo(PRESET, sample_photos_dir=tmp_path / "no-photos", max_file_size="2kb")
    with launched(page) as url:
        assert page.max_file_size == 2048
        assert upload(url, 1500) == 200
        assert upload(url, 4096) == 413  # refused while it is read, before it is kept
    # Without an explicit limit a launched page has the default one, 20 MiB, however it is launched.
    page = build_demo(PRESET, sample_photos_dir=tmp_path / "no-photos")
    with launched(page) as url:
        assert page.max_file_size == 20 * 1024 * 1024 == serve.file_size(serve.DEFAULT_MAX_FILE_SIZE)
        assert upload(url, 64 * 1024) == 200


def test_serve_cli_has_an_upload_limit_option():
    assert build_parser().parse_args([]).max_file_size == 20 * 1024 * 1024
    assert build_parser().parse_args(["--max-file-size", "5mb"]).max_file_size == 5 * 1024 * 1024
    assert build_parser().parse_args(["--max-file-size", "1000"]).max_file_size == 1000
    for bad in ("5 parsecs", "0", "-3mb"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--max-file-size", bad])


def test_closing_the_page_removes_its_results_folder(tmp_path, sample_photos):
    page = build_demo(PRESET, sample_photos_dir=tmp_path / "no-photos")
    writer = page.qface_app.write_csv
    with launched(page):
        csv_button = page.qface_app.analyze(str(sample_photos[CLICKED_PHOTO]))[5]
        folder = writer.folder
        assert folder.name.startswith("qface-results-") and Path(csv_button["value"]).is_relative_to(folder)
        assert Path(csv_button["value"]).is_file()
    assert not folder.exists()
    # Launched again, the page writes into a new folder, removed in turn.
    with launched(page):
        assert Path(page.qface_app.analyze(str(sample_photos[CLICKED_PHOTO]))[5]["value"]).is_file()
        again = writer.folder
    assert again != folder and not again.exists()


@pytest.mark.slow
def test_stopping_the_server_removes_its_results_folder(tmp_path):
    """`qface serve` stopped as a service manager stops it (SIGTERM) leaves no `qface-results-*` folder behind."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        sys.executable,
        "-m",
        "modeling_qface.webdemo.serve",
        "--model",
        PRESET,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--sample-photos",
        str(tmp_path / "no-photos"),
    ]
    env = {"TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    with running_server(command, url, tmp_path / "server.log", env=env, cwd=REPO_ROOT) as process:
        folders = list(temp.glob("qface-results-*"))
        assert len(folders) == 1 and folders[0].is_dir()
    assert process.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert list(temp.glob("qface-results-*")) == []


def test_a_stop_during_launch_is_a_clean_stop(tmp_path, monkeypatch):
    """SIGTERM can arrive after the server answers but before Gradio's `launch` starts to block (the signal becomes
    KeyboardInterrupt wherever `launch` is): `serve.main` still closes the page, removes its results folder and
    exits 0, as for a stop while blocking."""
    import tempfile

    import gradio as gr

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    launches = []

    def interrupted_launch(page, *args, **kwargs):
        launches.append(kwargs)
        assert len(list(temp.glob("qface-results-*"))) == 1
        raise KeyboardInterrupt

    monkeypatch.setattr(gr.Blocks, "launch", interrupted_launch)
    monkeypatch.setattr(serve, "_stop_on_sigterm", lambda: None)  # this test process keeps its own SIGTERM handling
    assert serve.main(["--model", PRESET, "--sample-photos", str(tmp_path / "no-photos")]) == 0
    assert launches and launches[0]["server_name"] == "127.0.0.1"
    assert list(temp.glob("qface-results-*")) == []


def test_a_busy_port_is_one_line_naming_it_before_the_model_loads(capsys, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(serve, "load_model", lambda *args: pytest.fail("the model was loaded"))
        assert serve.main(["--port", str(port), "--model", "qface-tiny"]) == 2
    assert capsys.readouterr().err == (
        f"qface serve: error: port {port} on 127.0.0.1 is already in use; choose another with --port\n"
    )
