{#
    The one conversion of money for reporting: an integer amount in the currency's minor unit (whole rupiah for
    IDR, cents for USD) to a numeric in currency units, rounded to the currency's exponent. The exponents are the
    var currency_exponents (IDR 0: 15000 -> 15000; USD 2: 1234 -> 12.34); an unknown currency uses 2 (ISO 4217's
    usual exponent). `currency` is a SQL expression: a column or a quoted literal (default 'IDR').
#}
{% macro to_currency_units(amount, currency="'IDR'") -%}
    {%- set exponents = var('currency_exponents') -%}
    {%- set exponent -%}
        (case upper({{ currency }}){% for code, digits in exponents.items() %} when '{{ code }}' then {{ digits | int }}{% endfor %} else 2 end)
    {%- endset -%}
    round(cast({{ amount }} as numeric) / power(10::numeric, {{ exponent }}), {{ exponent }})
{%- endmacro %}
