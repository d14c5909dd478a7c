# The rust-bench plugin for Kong's Python plugin server (kong-pdk on PyPI): the access phase
# makes exactly `calls` calls of kong.request.get_header("host"), like plugins/bench.
# The server names a plugin after its file stem, hence the file name.

Schema = ({"calls": {"type": "integer", "default": 1}},)
version = "0.1.0"
priority = 1000


class Plugin(object):
    def __init__(self, config):
        self.calls = config.get("calls", 1)

    def access(self, kong):
        for _ in range(self.calls):
            kong.request.get_header("host")
