-- Events per day and type, from `tracks` (event, event_text, timestamp, and who), as the packages' metrics do.
select
    cast({{ dbt.date_trunc('day', 'timestamp') }} as date) as day,
    event,
    event_text,
    count(*) as events,
    count(distinct coalesce(user_id, anonymous_id)) as people
from {{ source('segment', 'tracks') }}
group by 1, 2, 3
