-- Page views as Segment's web packages build them (one row per page view, deduplicated on id), selecting the
-- columns they read from `pages`: ids, the three timestamps, the page, the referrer, the five utm columns of
-- context_campaign_*, context_ip and context_user_agent.
with numbered as (
    select *, row_number() over (partition by id order by received_at) as row_num
    from {{ source('segment', 'pages') }}
)

select
    id as page_view_id,
    anonymous_id,
    user_id,
    received_at as received_at_tstamp,
    sent_at as sent_at_tstamp,
    timestamp as tstamp,
    url as page_url,
    path as page_url_path,
    title as page_title,
    search as page_url_query,
    referrer,
    context_campaign_source as utm_source,
    context_campaign_medium as utm_medium,
    context_campaign_name as utm_campaign,
    context_campaign_term as utm_term,
    context_campaign_content as utm_content,
    context_ip as ip,
    context_user_agent as user_agent,
    case
        when lower(context_user_agent) like '%android%' then 'Android'
        when context_user_agent like '%iPhone%' then 'iPhone'
        when context_user_agent like '%Macintosh%' or context_user_agent like '%Windows%'
            or context_user_agent like '%X11%' then 'Desktop'
        else 'Uncategorized'
    end as device_category
from numbered
where row_num = 1
