# The project's JupyterLab settings: `make notebook` (and tests/test_lab.py) put this folder first on
# JUPYTER_CONFIG_PATH. Nothing leaves the machine from the server or the page; the server binds
# 127.0.0.1 (flag in the Makefile) and allow_remote_access keeps its default.
c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# No Atom news feed is fetched, and the page is told that news is disabled.
c.LabApp.news_url = None
# No request to PyPI for a newer JupyterLab.
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
# The Extensions panel lists what is installed and never searches PyPI.
c.LabApp.extension_manager = "readonly"
