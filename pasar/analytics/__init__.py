"""Analytics: the dbt project (``dbt_project/``) and the tenant analyst database logins."""
