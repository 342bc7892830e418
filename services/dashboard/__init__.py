"""The live dashboard: one small web app over the running stack (components, topics, rates,
features, results), its page served from the package's ``static/`` folder."""
