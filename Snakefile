# saesanity: sanity checks for sparse autoencoders (arXiv 2602.14111) as a workflow.
#   snakemake --cores 8 all                      # the embedded default (config.yaml)
#   snakemake --cores 8 figures/synthetic_variable.pdf   # one target and what it needs
#   snakemake --cores 8 figures/table1.pdf             # case study 2's table 1
#   snakemake --cores 8 all --configfile config/synthetic_full.yaml
#   snakemake --profile profiles/slurm all --configfile config/paper.yaml   # on SLURM
#   snakemake --report report.html               # after a run: figures, tables, runtimes

from snakemake.utils import min_version

from saesanity.studies.runs import validate_config

min_version("9.0")


configfile: "config.yaml"


# The JSON schema, with one line per problem naming the key (snakemake.utils.validate
# would print the whole schema with each error).
validate_config(config, f"{workflow.basedir}/schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/synthetic.smk"
include: "rules/real.smk"
include: "rules/length_study.smk"
include: "rules/autointerp.smk"
include: "rules/sparse_probing.smk"
include: "rules/real_length.smk"
include: "rules/ravel.smk"
include: "rules/theory.smk"
include: "rules/provenance.smk"
include: "rules/sanity.smk"


rule all:
    default_target: True
    input:
        rules.synthetic_all.input,
        rules.real_all.input,
        rules.length_all.input,
        rules.autointerp_all.input,
        rules.sparse_probing_all.input,
        rules.real_length_all.input,
        rules.ravel_all.input,
        rules.theory_all.input,
        rules.provenance_all.input,
