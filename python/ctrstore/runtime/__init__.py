"""Running containers: the OCI runtime spec (``config.json``) generated from an image config
(:mod:`ctrstore.runtime.spec`); bundles and runc tasks build on it."""
