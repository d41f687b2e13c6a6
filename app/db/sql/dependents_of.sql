SELECT array_agg(name ORDER BY name) FROM schedules WHERE after @> ARRAY[$1::text]
