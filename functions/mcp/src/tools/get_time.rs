//! `get_time`: the current time in an IANA time zone.

use chrono::Utc;
use chrono_tz::Tz;
use rmcp::{
    handler::server::wrapper::{Json, Parameters},
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::{Deserialize, Serialize};

use super::{ToolError, Toolbox};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetTimeArgs {
    /// IANA time zone name such as "Europe/Paris" or "America/New_York"; defaults to "UTC".
    #[serde(default, rename = "timeZone")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GetTimeOutput {
    /// The zone the time is given in.
    #[serde(rename = "timeZone")]
    pub time_zone: String,
    /// Local time in RFC 3339 form, with the zone's offset.
    pub local: String,
    /// The same instant in UTC, RFC 3339.
    pub utc: String,
    /// Seconds since the Unix epoch.
    #[serde(rename = "unixSeconds")]
    pub unix_seconds: i64,
}

#[tool_router(router = get_time_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Current date and time in an IANA time zone (default UTC), as RFC 3339 and Unix seconds.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn get_time(
        &self,
        Parameters(args): Parameters<GetTimeArgs>,
    ) -> Result<Json<GetTimeOutput>, ToolError> {
        let name = args.time_zone.unwrap_or_else(|| "UTC".to_owned());
        let zone: Tz = name.parse().map_err(|_| {
            ToolError::Invalid(format!(
                "unknown time zone {name:?}; use an IANA name such as \"UTC\", \"Europe/Paris\" or \"America/New_York\""
            ))
        })?;
        let now = Utc::now();
        Ok(Json(GetTimeOutput {
            time_zone: zone.name().to_owned(),
            local: now.with_timezone(&zone).to_rfc3339(),
            utc: now.to_rfc3339(),
            unix_seconds: now.timestamp(),
        }))
    }
}
