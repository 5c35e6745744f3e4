"""tao-core: what every TAO-style network shares (specs, CLI, data, metrics, results).

Never imports torch or tensorflow: deploy-only and edge installs depend on it.
"""

__version__ = "0.1.0"
