"""Running containers, with no daemon: the runtime plugin (``io.containerd.runtime.v2.task``).

- :mod:`~ctrstore.runtime.bundle`: a task's bundle, every path and file of it;
- :mod:`~ctrstore.runtime.manager`: the plugin's instance, the task manager (where bundles
  and runc's state live);
- :mod:`~ctrstore.runtime.tasks`: a namespace's tasks (start under a shim, run attached,
  status, kill, wait, exec, logs, delete);
- :mod:`~ctrstore.runtime.runc`, :mod:`~ctrstore.runtime.shim`: the OCI runtime and the
  per-container process that keeps a task (attached or detached), with
  :mod:`~ctrstore.runtime.logs` (its json-file log), :mod:`~ctrstore.runtime.attach` (its
  attach socket) and :mod:`~ctrstore.runtime.restart` (restart policies);
- :mod:`~ctrstore.runtime.cgroups` (limits and usage read back), :mod:`~ctrstore.runtime.copy`
  (``cp``, confined to the container's root), :mod:`~ctrstore.runtime.lookpath` (``exec``'s
  command check);
- :mod:`~ctrstore.runtime.commit`: a container's changes as a new layer and image.

The spec itself (``config.json``) is made by :mod:`ctrstore.oci`. Containers — records with
their snapshot and bundle, names — are put together above this, in
:mod:`ctrstore.client.containers`; everything here takes roles, not the Client."""
