"""OCI and Docker media types, and what each kind of blob is."""

from __future__ import annotations

from ctrstore.errdefs import InvalidArgument, Unimplemented

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1_PLAIN = "application/vnd.docker.distribution.manifest.v1+json"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCTET_STREAM = "application/octet-stream"

MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEXES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
CONFIGS = frozenset({DOCKER_CONFIG, OCI_CONFIG})
LAYERS = frozenset(
    {
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_ZSTD,
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
    }
)
NON_DISTRIBUTABLE = frozenset(
    {
        DOCKER_LAYER_FOREIGN,
        DOCKER_LAYER_FOREIGN_GZIP,
        OCI_LAYER_ND,
        OCI_LAYER_ND_GZIP,
        OCI_LAYER_ND_ZSTD,
    }
)

#: What a registry is asked for when resolving a reference, best first.
MANIFEST_ACCEPT = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, "*/*")


def is_manifest(mt: str) -> bool:
    return mt in MANIFESTS


def is_index(mt: str) -> bool:
    return mt in INDEXES


def is_layer(mt: str) -> bool:
    return mt in LAYERS or mt in NON_DISTRIBUTABLE


def ref_prefix(mt: str) -> str:
    """The ingest-ref prefix containerd uses for a blob of this type (``layer-sha256:...``)."""
    if mt in MANIFESTS:
        return "manifest"
    if mt in INDEXES:
        return "index"
    if mt in CONFIGS:
        return "config"
    if is_layer(mt):
        return "layer"
    return "unknown"


def check_supported(mt: str, what: str) -> None:
    """Refuse media types ctrstore cannot or must not handle, naming the blob."""
    if mt in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_PLAIN):
        raise Unimplemented(f"{what}: Docker schema 1 manifests are not supported (media type {mt})")
    if mt in NON_DISTRIBUTABLE:
        raise Unimplemented(
            f"{what}: non-distributable layer ({mt}); fetching it from its foreign URLs is not allowed"
        )
    if mt not in MANIFESTS | INDEXES | CONFIGS | LAYERS | {OCTET_STREAM}:
        raise InvalidArgument(f"{what}: unknown media type {mt!r}")
