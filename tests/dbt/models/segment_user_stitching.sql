-- Each anonymous_id's latest known user_id, from `identifies` (anonymous_id, user_id, received_at), as the
-- packages' user stitching does before it joins page views to users.
with known as (
    select
        anonymous_id,
        user_id,
        row_number() over (partition by anonymous_id order by received_at desc) as latest
    from {{ source('segment', 'identifies') }}
    where anonymous_id is not null and user_id is not null
)

select anonymous_id, user_id as blended_user_id
from known
where latest = 1
