{#
    Post-hook of every model (dbt_project.yml): re-applies tenant isolation after each build, inside the build's
    transaction, by calling pasar_internal.apply_mart_rls (migration 0004):
      - a table with tenant_id gets ENABLE + FORCE row level security and the policy
        tenant_id = pasar_internal.current_tenant() (app.tenant_id, or an analyst login's own tenant);
      - a view gets security_invoker = true;
      - SELECT goes to the roles in meta.readers (pasar_app, pasar_analyst) and is revoked from the others.
    meta.shared = true declares market data (no tenant_id); a tenant model without tenant_id fails the build.
#}
{% macro apply_mart_rls() -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set readers = meta.get('readers', ['pasar_app', 'pasar_analyst']) -%}
    {%- set shared = meta.get('shared', false) -%}
    select pasar_internal.apply_mart_rls(
        {{ dbt.string_literal(this | string) }}::regclass,
        array[{%- for reader in readers -%}{{ dbt.string_literal(reader) }}{{ ", " if not loop.last }}{%- endfor -%}]::name[],
        {{ "true" if shared else "false" }}
    )
{%- endmacro %}
