# Brain maps of what each representation encodes (MRI datasets; mmssl.maps), per (method,
# fold, source): the attribution of an AD-vs-HC decision on the frozen latent, and for
# methods with a CL or CS part the cross-modal link map. Asked for by rule all when the
# dataset's maps.enabled is set (map_files in common.smk).


rule maps:
    """Integrated Gradients of the probe's AD-vs-HC decision on one source's latent, AD minus HC test-subject mean,
    with its permutation null (maps.null_test: labels permuted, decision refit, family-wise threshold in the sidecar)."""
    input:
        unpack(PLAN.attribution_inputs),
    output:
        attribution=res("{dataset}", "maps", "{method}", "fold{fold}", "{source}_desc-attribution_map.nii.gz"),
        sidecar=res("{dataset}", "maps", "{method}", "fold{fold}", "{source}_desc-attribution_map.json"),
        figure=report(res("{dataset}", "maps", "{method}", "fold{fold}", "{source}_desc-attribution_map.png"),
                      caption="../report/maps.rst", category="maps", subcategory="{dataset}",
                      labels={"method": "{method}", "fold": "{fold}", "source": "{source}"}),
    log:
        res("{dataset}", "logs", "maps", "{method}", "fold{fold}", "{source}_attribution.log"),
    benchmark:
        res("{dataset}", "benchmarks", "maps", "{method}", "fold{fold}", "{source}_attribution.tsv")
    wildcard_constraints:
        dataset=PLAN.datasets_with(maps=True),
        source="[A-Za-z0-9]+",
    params:
        classes=PLAN.maps_classes,
        grid=PLAN.maps_grid,
        settings=PLAN.settings("maps"),
        probe=PLAN.probe_settings,
    conda:
        PLAN.conda_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl maps --store {input.store} --latents {input.latents} --model {input.model} "
        "--source {wildcards.source} --classes {params.classes} --grid-json {params.grid:q} "
        "--settings-json {params.settings:q} --probe {input.probe} --probe-settings-json {params.probe:q} "
        "--attribution {output.attribution} --figure {output.figure} 2> {log}"


rule maps_links:
    """Cross-modal link map of one source: its locations scored against the other sources' latents with the critic."""
    input:
        unpack(PLAN.links_inputs),
    output:
        links=res("{dataset}", "maps", "{method}", "fold{fold}", "{source}_desc-links_map.nii.gz"),
        sidecar=res("{dataset}", "maps", "{method}", "fold{fold}", "{source}_desc-links_map.json"),
    log:
        res("{dataset}", "logs", "maps", "{method}", "fold{fold}", "{source}_links.log"),
    benchmark:
        res("{dataset}", "benchmarks", "maps", "{method}", "fold{fold}", "{source}_links.tsv")
    wildcard_constraints:
        dataset=PLAN.datasets_with(maps=True),
        source="[A-Za-z0-9]+",
    params:
        classes=PLAN.maps_classes,
        grid=PLAN.maps_grid,
        settings=PLAN.settings("maps"),
    conda:
        PLAN.conda_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl maps --store {input.store} --latents {input.latents} --model {input.model} "
        "--source {wildcards.source} --classes {params.classes} --grid-json {params.grid:q} "
        "--settings-json {params.settings:q} --links {output.links} 2> {log}"
