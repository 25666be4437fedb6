"""`course.py lab` starts JupyterLab with the project's settings defaults: no first-run news question."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def _course_py():
    spec = importlib.util.spec_from_file_location("course_script", ROOT / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lab_command_points_jupyterlab_at_the_project_settings():
    course = _course_py()
    command = course.lab_command(["--port=9999"])
    settings = [part for part in command if part.startswith("--LabApp.app_settings_dir=")]
    assert len(settings) == 1
    folder = Path(settings[0].split("=", 1)[1])
    assert folder.resolve() == (ROOT / ".jupyter" / "lab" / "settings").resolve()
    assert command[1:3] == ["-m", "jupyterlab"] and "--port=9999" in command  # the learner's arguments still pass


def test_project_settings_turn_the_news_question_off():
    from jupyterlab_server.settings_utils import _get_overrides

    folder = ROOT / ".jupyter" / "lab" / "settings"
    written = json.loads((folder / "overrides.json").read_text())
    assert written[NOTIFICATION]["fetchNews"] == "false"  # "none" (the default) is what makes JupyterLab ask
    overrides, error = _get_overrides(str(folder))  # read the way JupyterLab's server reads it
    assert not error and overrides[NOTIFICATION]["fetchNews"] == "false"
