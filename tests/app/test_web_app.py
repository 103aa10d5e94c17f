"""`python -m dajax.app`: the Gradio page in a real (headless Chromium) browser, offline."""

import io
import os
import shutil
import socket
import urllib.request

import cv2
import matplotlib.cbook
import numpy as np
import pytest

from dajax import app
from dajax.inference import DepthEstimator
from dajax.io.depth_png import read_depth_png16
from dajax.io.pointcloud import read_ply
from dajax.visualize import depth_picture
from tests.tiny_models import TINY_V2

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PHOTO = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]


def tiny_estimator(**changes) -> DepthEstimator:
    return DepthEstimator.random(TINY_V2.replace(**changes), input_size=56)


def test_metric_models_also_offer_a_point_cloud(tmp_path):
    est = tiny_estimator(head="metric", max_depth=20.0)
    image = cv2.resize(cv2.imread(PHOTO), (51, 60))[:, :, ::-1]
    out = app.depth_downloads(est, image, str(tmp_path), "photo", fov=60.0)
    depth = np.load(out["npy"])
    points, colors = read_ply(out["ply"])
    assert len(points) == np.count_nonzero(depth > 0) and colors.dtype == np.uint8
    np.testing.assert_allclose(np.sort(points[:, 2]), np.sort(depth[depth > 0]), rtol=1e-6)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"  # set on import, before gradio
    assert "metres" in app.describe(est, "m.pth") and "random" in app.describe(est, None)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.mark.browser
def test_upload_a_photo_and_get_its_depth_in_the_browser(browser, tmp_path):
    import gradio as gr
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    est = tiny_estimator()
    demo = app.build_app(est, app.describe(est, None))
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    theme = gr.themes.Default(**app.THEME_FONTS)
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        theme=theme,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
    )
    try:
        browser.get(url)
        wait = WebDriverWait(browser, 30)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"))
        assert "random demo weights" in browser.find_element(By.TAG_NAME, "body").text
        upload.send_keys(PHOTO)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "img[src*='grace_hopper']"))
        browser.find_element(By.XPATH, "//button[contains(., 'Compute depth')]").click()
        links = {}
        for name in ("gray", "png16", "npy"):
            link = wait.until(lambda d, n=name: d.find_element(By.CSS_SELECTOR, f"#{n} a"))
            links[name] = link.get_attribute("href")
        slider = browser.find_elements(By.CSS_SELECTOR, "#depth-slider img")
        shown = [img.get_attribute("src") for img in slider]
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(tmp_path / "page.png"))
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        files = {name: _fetch(href) for name, href in links.items()}
        pictures = [
            cv2.imdecode(np.frombuffer(_fetch(src), np.uint8), 1)[:, :, ::-1] for src in shown
        ]
    finally:
        demo.close()
    photo = cv2.imread(PHOTO)[:, :, ::-1]
    depth = est(photo)
    np.testing.assert_allclose(np.load(io.BytesIO(files["npy"])), depth, rtol=1e-5)
    (tmp_path / "d_16.png").write_bytes(files["png16"])
    back = read_depth_png16(tmp_path / "d_16.png")
    assert np.abs(back - depth).max() <= np.ptp(depth) / 65535 + 1e-6
    gray = cv2.imdecode(np.frombuffer(files["gray"], np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(gray, depth_picture(depth, False, "gray")[:, :, 0])
    assert len(pictures) == 2
    np.testing.assert_array_equal(pictures[0], photo)
    assert np.abs(pictures[1].astype(int) - depth_picture(depth, False, "spectral_r")).max() <= 1
    assert cv2.imread(str(tmp_path / "page.png")).shape[1] == 1280  # the screenshot decodes
    assert all(r.startswith(url) for r in resources), "the page fetched from outside"


@pytest.mark.parametrize("flags, share", [([], False), (["--share"], True)])
@pytest.mark.slow
def test_share_is_a_flag_of_the_app(monkeypatch, flags, share):
    """Gradio's start-up hint says to set share=True: `--share` is how (off by default)."""
    import gradio as gr

    launched = {}
    monkeypatch.setattr(app, "load", lambda args: tiny_estimator())
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw))
    assert app.main(flags) == 0
    assert launched["share"] is share and launched["server_name"] == "127.0.0.1"


def test_request_files_are_bounded_and_leave_with_the_process(tmp_path):
    """Only the newest `keep` requests' downloads stay on disk, under one folder of the app's
    own (removed at exit: `atexit`)."""
    folders = app.RequestFolders(keep=3)
    made = []
    for _ in range(7):
        made.append(folders.new())
        with open(os.path.join(made[-1], "x.npy"), "wb") as f:
            f.write(b"0" * 100)
    assert [os.path.isdir(f) for f in made] == [False] * 4 + [True] * 3
    assert sorted(os.listdir(folders.root)) == sorted(os.path.basename(f) for f in made[-3:])
    shutil.rmtree(folders.root)


def test_the_page_offers_rendered_examples_and_points_to_the_docs(tmp_path):
    import gradio as gr

    paths = app.example_images(str(tmp_path), 2)
    images = [cv2.imread(p) for p in paths]
    assert [i.shape for i in images] == [(518, 518, 3)] * 2
    assert not np.array_equal(images[0], images[1])  # an indoor and an outdoor scene
    demo = app.build_app(tiny_estimator(), "note")
    datasets = [b for b in demo.blocks.values() if isinstance(b, gr.Dataset)]
    assert len(datasets) == 1 and len(datasets[0].samples) == app.EXAMPLES
    texts = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert any("docs/predict.md" in t for t in texts)


def test_an_upload_that_is_not_an_image_gets_its_reason_on_the_page(tmp_path):
    """A text file named .jpg reaches `read_image` undecoded by Gradio, whose refusal is the
    page's one-sentence error (a `gr.Error`), not Gradio's bare badge."""
    import gradio as gr
    from gradio.data_classes import FileData

    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image at all")
    demo = app.build_app(tiny_estimator(), "note")
    (image,) = [b for b in demo.blocks.values() if isinstance(b, gr.Image) and b.label == "Image"]
    assert image.preprocess(FileData(path=str(fake), orig_name="notes.jpg")) == str(fake)
    (predict,) = [f.fn for f in demo.fns.values() if f.name == "predict"]
    with pytest.raises(gr.Error) as refused:
        predict(str(fake))
    message = refused.value.message
    assert "notes.jpg" in message and "\n" not in message
