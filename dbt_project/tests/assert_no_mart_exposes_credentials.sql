-- No model of this project has a column that could carry a credential (password hashes, key hashes, secrets).
select table_name, column_name
from information_schema.columns
where table_schema = '{{ target.schema }}'
  and (column_name ilike '%password%' or column_name ilike '%key_hash%' or column_name ilike '%secret%')
