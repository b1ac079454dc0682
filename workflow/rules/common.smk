# The adapter between the rules and the package: config validation at load, the `mmssl`
# shell function, and PLAN (mmssl.plan.Plan), whose methods are the rules' input and params
# functions. What a rule reads, writes and passes is computed in the package (tested there);
# what a dataset kind or a modality needs is asked of their registries (mmssl.data.kinds,
# mmssl.paths), never by comparing names here.
import shlex
import sys
from pathlib import Path

# the package lives beside the rules; importing it from here needs no install step
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
import mmssl.config as mcfg  # noqa: E402
from mmssl.paths import BOLD, SOURCES  # noqa: E402
from mmssl.plan import MNIST_FILES, SCAN_WILDCARDS, Plan  # noqa: E402

try:
    # the one validation, at load, before any rule: the schema (every section), its defaults
    # filled in, each dataset's merged sections, then the checks that need more than the
    # schema. One line naming the key and what is allowed, no traceback.
    mcfg.validate(config)
except mcfg.ConfigError as err:
    print(f"invalid configuration: {err}", file=sys.stderr)
    sys.exit(1)


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    method="[A-Za-z][A-Za-z0-9@-]*",
    fold="[0-9]+",


def _python():
    """The interpreter rules run: the conda env's `python` with --software-deployment-method
    conda, else the one running Snakemake (so a venv works without being activated)."""
    try:
        from snakemake.settings.types import DeploymentMethod

        if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
            return "python"
    except (ImportError, AttributeError):
        pass
    return shlex.quote(sys.executable)


# Every rule's shell line starts with `mmssl <command>`: a shell function, defined once
# here, that runs the CLI of the package beside this file with the interpreter above (so
# neither an activated venv nor an installed package is needed, and the rule shows its
# command). Snakemake formats the prefix once, hence the doubled braces.
_MMSSL_FUNCTION = (
    f"mmssl() {{ PYTHONPATH={shlex.quote(str(Path(workflow.basedir) / 'workflow'))}"
    f"${{PYTHONPATH:+:$PYTHONPATH}} {_python()} -m mmssl \"$@\"; }}; "
)
_ESCAPED = _MMSSL_FUNCTION.replace("{", "{{").replace("}", "}}")
shell.prefix(f"set -euo pipefail; {_ESCAPED}")


PLAN = Plan(config, samples_of=lambda dataset: checkpoints.discover.get(dataset=dataset).output.samples,
            error=WorkflowError)
res = PLAN.res  # results/{dataset}/<parts>
