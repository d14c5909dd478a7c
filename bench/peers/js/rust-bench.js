// The rust-bench plugin for Kong's JS plugin server (kong-pdk on npm): the access phase makes
// exactly `calls` calls of kong.request.get_header("host"), like plugins/bench.
'use strict'

class Plugin {
  constructor(config) {
    this.calls = config.calls ?? 1
  }

  async access(kong) {
    for (let i = 0; i < this.calls; i++) {
      await kong.request.getHeader('host')
    }
  }
}

module.exports = {
  Plugin,
  Name: 'rust-bench',
  Schema: [{ calls: { type: 'integer', default: 1 } }],
  Version: '0.1.0',
  Priority: 1000,
}
