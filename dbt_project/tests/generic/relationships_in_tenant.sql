{#
    A tenant-scoped foreign key: every (tenant_id, column_name) of the model exists as (tenant_id, field) in `to`.
    The plain relationships test would accept a row pointing at another tenant's id. (`model` may be a filtered
    subquery, see get_where_subquery: hence the select around it.)
#}
{% test relationships_in_tenant(model, column_name, to, field) %}
select child.tenant_id, child.{{ column_name }}
from (select * from {{ model }}) as child
where child.{{ column_name }} is not null
  and not exists (
      select 1 from {{ to }} as parent
      where parent.tenant_id = child.tenant_id and parent.{{ field }} = child.{{ column_name }}
  )
{% endtest %}
