-- Sessions: a visitor's page views with no gap of 30 minutes or more, as the packages sessionise them.
with views as (
    select
        v.*,
        coalesce(s.blended_user_id, v.anonymous_id) as blended_user_id,
        lag(v.tstamp) over (partition by v.anonymous_id order by v.tstamp) as previous_tstamp
    from {{ ref('segment_web_page_views') }} as v
    left join {{ ref('segment_user_stitching') }} as s on s.anonymous_id = v.anonymous_id
),

starts as (
    select
        *,
        case
            when previous_tstamp is null
                or {{ dbt.datediff('previous_tstamp', 'tstamp', 'second') }} >= 1800 then 1
            else 0
        end as new_session
    from views
),

numbered as (
    select *, sum(new_session) over (partition by anonymous_id order by tstamp rows unbounded preceding) as session_number
    from starts
)

select
    anonymous_id,
    session_number,
    max(blended_user_id) as blended_user_id,
    min(tstamp) as session_start_tstamp,
    max(tstamp) as session_end_tstamp,
    count(*) as page_views,
    max(case when new_session = 1 then utm_source end) as utm_source,
    max(case when new_session = 1 then page_url_path end) as first_page_url_path,
    max(case when new_session = 1 then ip end) as ip
from numbered
group by 1, 2
