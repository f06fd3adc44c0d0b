"""``ctrstore completion bash|zsh|fish``: the shell's completion script.

The scripts are click's: at each TAB the shell runs ``ctrstore`` with ``_CTRSTORE_COMPLETE``
set, which prints the candidates — commands and flags from the command tree, and the names of
containers, images, networks and volumes from the store (each argument that takes one says
so with ``shell_complete=complete("container")``, see ``ctrstore.cli.objects``), in the
namespace and store that the command line being completed names (``-n``, ``--root``...).

bash's script is ctrstore's own: bash cuts words at ``:`` (``COMP_WORDBREAKS``), which would
break every ``image:tag``; the script sends the line itself (``COMP_LINE`` up to the cursor)
and answers with what follows the last ``:`` of the word, as bash-completion's
``__ltrim_colon_completions`` does.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import click
from click.shell_completion import BashComplete, CompletionItem, add_completion_class, split_arg_string

__all__ = ["COMPLETE_VAR", "SHELLS", "completion", "register"]

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_CTRSTORE_COMPLETE"
_LINE_VAR = "_CTRSTORE_COMP_LINE"

_SOURCE_BASH = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local line="${COMP_LINE:0:COMP_POINT}"
    local token="${line##*[[:space:]]}"
    local cut=""
    if [[ "$COMP_WORDBREAKS" == *:* && "$token" == *:* ]]; then
        cut="${token%%"${token##*:}"}"
    fi
    local response completion type value
    response=$(env %(line_var)s="$line" %(complete_var)s=bash_complete "$1")
    COMPREPLY=()
    for completion in $response; do
        type="${completion%%%%,*}"
        value="${completion#*,}"
        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames 2>/dev/null
            return 0
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default 2>/dev/null
            return 0
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("${value#"$cut"}")
        fi
    done
    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


class _Bash(BashComplete):
    """click's bash completion, fed the command line rather than bash's words (see the
    module's docstring)."""

    source_template: ClassVar[str] = _SOURCE_BASH

    def source_vars(self) -> Any:  # click's _SourceVarsDict, plus the line's variable
        return {**super().source_vars(), "line_var": _LINE_VAR}

    def get_completion_args(self) -> tuple[list[str], str]:
        line = os.environ.get(_LINE_VAR)
        if line is None:  # an old script: bash's words, as click reads them
            return super().get_completion_args()
        words = split_arg_string(line)
        if not line or (line[-1].isspace() and not line.endswith("\\ ")):
            return words[1:], ""
        return words[1:-1], words[-1] if words else ""

    def format_completion(self, item: CompletionItem) -> str:
        return f"{item.type},{item.value}"


def register() -> None:
    """Make ctrstore's bash completion the one click answers ``bash_complete`` with (called
    before the command line is handled, when ``_CTRSTORE_COMPLETE`` is set)."""
    add_completion_class(_Bash, "bash")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    It completes commands, flags, and the names of containers, images, networks and volumes.

    \b
      source <(ctrstore completion bash)                    # this bash
      ctrstore completion bash > /etc/bash_completion.d/ctrstore
      ctrstore completion zsh > "${fpath[1]}/_ctrstore"      # zsh (then: compinit)
      ctrstore completion fish > ~/.config/fish/completions/ctrstore.fish
    """
    from click.shell_completion import get_completion_class

    register()
    cls = get_completion_class(shell)
    assert cls is not None  # every SHELLS entry is one click knows
    root = ctx.find_root().command
    click.echo(cls(root, {}, "ctrstore", COMPLETE_VAR).source(), nl=False)
