//! The text form of a structured tool result. rmcp's `Json` output puts the whole result in
//! `structuredContent` and again, serialized, in a text block for clients that read only
//! `content`. Kept while small; a large result would otherwise travel twice (a full page of
//! `state_list` was 19.6 MB for 9.8 MB of documents), so its text says where the result is.

use rmcp::model::{CallToolResponse, ContentBlock};

/// The largest text copy of a structured result kept as is.
pub const TEXT_COPY_LIMIT: usize = 4 * 1024;

/// `response` with a large text copy of its structured content replaced by a short note.
pub fn without_large_text_copy(mut response: CallToolResponse) -> CallToolResponse {
    let CallToolResponse::Complete(result) = &mut response else {
        return response;
    };
    let Some(structured) = &result.structured_content else {
        return response;
    };
    let copy_len = match result.content.as_slice() {
        [only] => only.as_text().map(|text| text.text.len()),
        _ => None,
    };
    if let Some(len) = copy_len.filter(|len| *len > TEXT_COPY_LIMIT) {
        let summary = match structured.get("items").and_then(|items| items.as_array()) {
            Some(items) => format!("{} documents", items.len()),
            None => "the result".to_owned(),
        };
        result.content = vec![ContentBlock::text(format!(
            "{summary} ({len} bytes of JSON) in structuredContent"
        ))];
    }
    response
}

#[cfg(test)]
mod tests {
    use rmcp::model::CallToolResult;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_large_copy_becomes_a_note_and_a_small_one_stays() {
        let big = json!({"items": [{"value": "x".repeat(5000)}], "nextCursor": "c"});
        let answer = without_large_text_copy(CallToolResult::structured(big.clone()).into());
        let CallToolResponse::Complete(result) = answer else {
            panic!("complete")
        };
        assert_eq!(result.structured_content, Some(big));
        let text = result.content[0].as_text().map(|t| t.text.clone());
        assert_eq!(
            text.as_deref(),
            Some("1 documents (5041 bytes of JSON) in structuredContent")
        );
        let small = json!({"message": "hi"});
        let answer = without_large_text_copy(CallToolResult::structured(small.clone()).into());
        let CallToolResponse::Complete(result) = answer else {
            panic!("complete")
        };
        assert_eq!(
            result.content[0].as_text().map(|t| t.text.as_str()),
            Some(r#"{"message":"hi"}"#)
        );
    }
}
