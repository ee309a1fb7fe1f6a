-- gold.index_membership: per index and security, the spells of membership [member_from, member_to).
WITH
{% include '_security_master.sql' %},
{% include '_index_membership.sql' %}
SELECT index_name, security_id,
       row_number() OVER (PARTITION BY index_name, security_id ORDER BY member_from NULLS FIRST) AS spell,
       ticker, member_from, member_to
FROM im_spells
