# mmssl: the taxonomy of multimodal self-supervised learning as a Snakemake workflow.
# Thin on purpose: every rule calls one `mmssl` sub-command (workflow/mmssl/cli.py).
#   snakemake --profile profiles/local                   # laptop / workstation
#   snakemake --profile profiles/slurm --configfile=resources/configs/paper.yaml  # SLURM cluster
#   snakemake --profile profiles/local results/two_view_mnist/probe/L-CL/fold2.tsv   # one fold
import os

from snakemake.utils import min_version

min_version("9.0")


# A file given with --configfile is the whole configuration (the schema fills in
# defaults); config.yaml beside this file, the demo, is read only when no --configfile
# is given (from any working directory).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


# the report's landing page: every dataset's results table (workflow/report/workflow.rst)
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        PLAN.all_results(),
    default_target: True
