//! MsgPack-RPC messages as Kong sends and expects them (protocol.md §6, §7).

use super::Request;
use rmp::encode as enc;
use rmpv::{Integer, Value};
use thiserror::Error;

/// The request id, echoed back exactly as received (Kong asserts on it).
pub type MsgId = Integer;

/// Kong's result of a PDK call, as a Step carries it: the encoded value, or Kong's error.
pub type StepResult = Result<Vec<u8>, String>;

impl Request {
    /// A Step's (or StepError's) event id and result; any other request is given back.
    pub fn into_step(self) -> Result<(u64, StepResult), Request> {
        match self {
            Request::Step { event_id, data } => {
                let mut encoded = Vec::with_capacity(32);
                rmpv::encode::write_value(&mut encoded, &data).expect("Vec write");
                Ok((event_id, Ok(encoded)))
            }
            Request::StepError { event_id, message } => Ok((event_id, Err(message))),
            other => Err(other),
        }
    }
}

#[derive(Debug, Error)]
pub enum RequestError {
    /// Not a request at all: there is no id to answer to, so the connection is closed.
    #[error("not a MsgPack-RPC request: {0}")]
    Unanswerable(String),
    /// A request whose id is known but whose content is wrong: answered with an error.
    #[error("{message}")]
    Invalid { msgid: MsgId, message: String },
}

const STEP_METHODS: [&str; 7] = [
    "plugin.Step",
    "plugin.StepMultiMap",
    "plugin.StepCredential",
    "plugin.StepConsumer",
    "plugin.StepRoute",
    "plugin.StepService",
    "plugin.StepMemoryStats",
];

/// Parses `[0, msgid, method, [param]]`.
pub fn parse(message: Value) -> Result<(MsgId, Request), RequestError> {
    let Value::Array(mut parts) = message else {
        return Err(RequestError::Unanswerable(format!(
            "expected the array [0, msgid, method, params], got {}",
            kind(&message)
        )));
    };
    let msgid = match parts.get(1) {
        Some(Value::Integer(id)) => *id,
        _ => {
            return Err(RequestError::Unanswerable(
                "expected [0, msgid, method, params] with an integer msgid".into(),
            ))
        }
    };
    let invalid = |message: String| RequestError::Invalid { msgid, message };
    if parts.len() != 4 {
        return Err(invalid(format!(
            "expected [0, msgid, method, params], got an array of {} elements",
            parts.len()
        )));
    }
    if parts[0].as_u64() != Some(0) {
        return Err(invalid(format!(
            "message type {} is not a request (0)",
            parts[0]
        )));
    }
    let params = parts.pop().expect("4 parts");
    let method = match parts.pop().expect("4 parts") {
        Value::String(method) => method
            .into_str()
            .ok_or_else(|| invalid("method name is not UTF-8".into()))?,
        other => {
            return Err(invalid(format!(
                "method name must be a string, got {}",
                kind(&other)
            )))
        }
    };
    let param = match params {
        Value::Array(mut params) if params.len() == 1 => params.pop().expect("1 param"),
        other => {
            return Err(invalid(format!(
                "{method}: params must be an array of one argument, got {}",
                describe_params(&other)
            )))
        }
    };
    let request = match method.as_str() {
        "plugin.StartInstance" => {
            let name = bytes(field(&param, "Name"))
                .ok_or_else(|| invalid(format!("{method}: `Name` must be a string")))?;
            let config = bytes(field(&param, "Config"))
                .ok_or_else(|| invalid(format!("{method}: `Config` must be a string of JSON")))?;
            Request::StartInstance { name, config }
        }
        "plugin.CloseInstance" => Request::CloseInstance {
            instance_id: integer(Some(&param))
                .ok_or_else(|| invalid(format!("{method}: the argument must be an instance id")))?,
        },
        "plugin.HandleEvent" => Request::HandleEvent {
            instance_id: integer(field(&param, "InstanceId"))
                .ok_or_else(|| invalid(format!("{method}: `InstanceId` must be an integer")))?,
            event_name: bytes(field(&param, "EventName"))
                .ok_or_else(|| invalid(format!("{method}: `EventName` must be a string")))?,
        },
        step if STEP_METHODS.contains(&step) || step == "plugin.StepError" => {
            let event_id = event_id(&param)
                .ok_or_else(|| invalid(format!("{method}: `EventId` must be an integer")))?;
            let data = take_field(param, "Data");
            if step == "plugin.StepError" {
                let message = match &data {
                    Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => other.to_string(),
                };
                Request::StepError { event_id, message }
            } else {
                Request::Step { event_id, data }
            }
        }
        "plugin.GetStatus" => Request::GetStatus,
        _ => return Err(invalid(format!("method {method} not implemented"))),
    };
    Ok((msgid, request))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::F32(_) | Value::F64(_) => "a float",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary data",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an ext value",
    }
}

fn describe_params(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("{} arguments", items.len()),
        other => kind(other).to_string(),
    }
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    match map {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| {
                k.as_str() == Some(key)
                    || matches!(k, Value::String(s) if s.as_bytes() == key.as_bytes())
            })
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Removes and returns a map entry; `Nil` when absent (Kong omits `Data` for nil).
fn take_field(map: Value, key: &str) -> Value {
    match map {
        Value::Map(entries) => entries
            .into_iter()
            .find(|(k, _)| matches!(k, Value::String(s) if s.as_bytes() == key.as_bytes()))
            .map(|(_, v)| v)
            .unwrap_or(Value::Nil),
        _ => Value::Nil,
    }
}

/// Ids are integers, but Kong holds them as Lua doubles: accept an integral float too.
fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Integer(i) => i.as_i64(),
        Value::F64(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Some(*f as i64),
        _ => None,
    }
}

fn event_id(param: &Value) -> Option<u64> {
    integer(field(param, "EventId")).and_then(|id| u64::try_from(id).ok())
}

/// A `str` or `bin` as raw bytes: Kong's strings need not be UTF-8.
fn bytes(value: Option<&Value>) -> Option<Vec<u8>> {
    match value? {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

/// What a HandleEvent or Step is answered with.
pub enum StepData<'a> {
    /// The handler finished.
    Ret,
    /// The handler's next PDK call; `args` is an already-encoded MessagePack array.
    Call { method: &'a str, args: &'a [u8] },
}

fn write_header(out: &mut Vec<u8>, msgid: MsgId) {
    enc::write_array_len(out, 4).expect("Vec write");
    enc::write_pfix(out, 1).expect("Vec write");
    rmpv::encode::write_value(out, &Value::Integer(msgid)).expect("Vec write");
}

/// `[1, msgid, error, nil]`.
pub fn error_reply(msgid: MsgId, error: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + error.len());
    write_header(&mut out, msgid);
    enc::write_str(&mut out, error).expect("Vec write");
    enc::write_nil(&mut out).expect("Vec write");
    out
}

/// `[1, msgid, nil, result]`.
pub fn result_reply(msgid: MsgId, result: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_header(&mut out, msgid);
    enc::write_nil(&mut out).expect("Vec write");
    rmpv::encode::write_value(&mut out, result).expect("Vec write");
    out
}

/// `[1, msgid, nil, {"EventId": id, "Data": "ret" | {"Method": m, "Args": [...]}}]`.
pub fn step_reply(msgid: MsgId, event_id: u64, data: StepData<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_header(&mut out, msgid);
    enc::write_nil(&mut out).expect("Vec write");
    enc::write_map_len(&mut out, 2).expect("Vec write");
    enc::write_str(&mut out, "EventId").expect("Vec write");
    enc::write_uint(&mut out, event_id).expect("Vec write");
    enc::write_str(&mut out, "Data").expect("Vec write");
    match data {
        StepData::Ret => enc::write_str(&mut out, "ret").expect("Vec write"),
        StepData::Call { method, args } => {
            enc::write_map_len(&mut out, 2).expect("Vec write");
            enc::write_str(&mut out, "Method").expect("Vec write");
            enc::write_str(&mut out, method).expect("Vec write");
            enc::write_str(&mut out, "Args").expect("Vec write");
            out.extend_from_slice(args);
        }
    }
    out
}

/// The event a Step request (any Step method, or StepError) is for.
pub fn step_event_id(message: &Value) -> Option<u64> {
    let Value::Array(parts) = message else {
        return None;
    };
    let method = parts.get(2)?.as_str()?;
    if !(STEP_METHODS.contains(&method) || method == "plugin.StepError") {
        return None;
    }
    match parts.get(3)? {
        Value::Array(params) => event_id(params.first()?),
        _ => None,
    }
}

/// `[0, msgid, "plugin.Step" | "plugin.StepError", [{"EventId": id, "Data": data}]]`: a Step
/// passed on to the host that runs the event. `data`: the encoded result, or Kong's error.
pub fn step_request(msgid: MsgId, event_id: u64, data: Result<&[u8], &str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    enc::write_array_len(&mut out, 4).expect("Vec write");
    enc::write_pfix(&mut out, 0).expect("Vec write");
    rmpv::encode::write_value(&mut out, &Value::Integer(msgid)).expect("Vec write");
    let method = if data.is_ok() {
        "plugin.Step"
    } else {
        "plugin.StepError"
    };
    enc::write_str(&mut out, method).expect("Vec write");
    enc::write_array_len(&mut out, 1).expect("Vec write");
    enc::write_map_len(&mut out, 2).expect("Vec write");
    enc::write_str(&mut out, "EventId").expect("Vec write");
    enc::write_uint(&mut out, event_id).expect("Vec write");
    enc::write_str(&mut out, "Data").expect("Vec write");
    match data {
        Ok(encoded) => out.extend_from_slice(encoded),
        Err(message) => enc::write_str(&mut out, message).expect("Vec write"),
    }
    out
}

/// `[2, "serverPid", pid]`: lets Kong notice a restarted server (protocol.md §7.6).
pub fn server_pid_notification(pid: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    enc::write_array_len(&mut out, 3).expect("Vec write");
    enc::write_pfix(&mut out, 2).expect("Vec write");
    enc::write_str(&mut out, "serverPid").expect("Vec write");
    enc::write_uint(&mut out, pid as u64).expect("Vec write");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Value {
        rmpv::decode::read_value(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn spec_15_2_handle_event_parses() {
        let bytes = [
            0x94, 0x00, 0x02, 0xb2, b'p', b'l', b'u', b'g', b'i', b'n', b'.', b'H', b'a', b'n',
            b'd', b'l', b'e', b'E', b'v', b'e', b'n', b't', 0x91, 0x82, 0xaa, b'I', b'n', b's',
            b't', b'a', b'n', b'c', b'e', b'I', b'd', 0x07, 0xa9, b'E', b'v', b'e', b'n', b't',
            b'N', b'a', b'm', b'e', 0xa6, b'a', b'c', b'c', b'e', b's', b's',
        ];
        let (msgid, request) = parse(decode(&bytes)).unwrap();
        assert_eq!(msgid.as_u64(), Some(2));
        assert!(
            matches!(request, Request::HandleEvent { instance_id: 7, ref event_name } if event_name == b"access")
        );
    }

    #[test]
    fn spec_15_2_replies_are_byte_exact() {
        let msgid = Integer::from(4);
        assert_eq!(
            step_reply(msgid, 0, StepData::Ret),
            [
                0x94, 0x01, 0x04, 0xc0, 0x82, 0xa7, b'E', b'v', b'e', b'n', b't', b'I', b'd', 0x00,
                0xa4, b'D', b'a', b't', b'a', 0xa3, b'r', b'e', b't'
            ]
        );
        let args = [0x91, 0xa4, b'h', b'o', b's', b't'];
        let reply = step_reply(
            Integer::from(2),
            0,
            StepData::Call {
                method: "kong.request.get_header",
                args: &args,
            },
        );
        let mut expected = vec![0x94, 0x01, 0x02, 0xc0, 0x82, 0xa7];
        expected.extend(b"EventId");
        expected.extend([0x00, 0xa4]);
        expected.extend(b"Data");
        expected.extend([0x82, 0xa6]);
        expected.extend(b"Method");
        expected.push(0xb7);
        expected.extend(b"kong.request.get_header");
        expected.push(0xa4);
        expected.extend(b"Args");
        expected.extend(args);
        assert_eq!(reply, expected);
    }

    #[test]
    fn spec_15_3_frames_are_byte_exact() {
        let mut no_instance = vec![0x94, 0x01, 0x09, 0xb4];
        no_instance.extend(b"no plugin instance 7");
        no_instance.push(0xc0);
        assert_eq!(
            error_reply(Integer::from(9), "no plugin instance 7"),
            no_instance
        );
        let mut pid = vec![0x93, 0x02, 0xa9];
        pid.extend(b"serverPid");
        pid.extend([0xcd, 0x30, 0x39]);
        assert_eq!(server_pid_notification(12345), pid);
    }

    #[test]
    fn step_without_data_is_nil_and_typed_variants_are_steps() {
        let request = Value::Array(vec![
            Value::from(0),
            Value::from(5),
            Value::from("plugin.StepMultiMap"),
            Value::Array(vec![Value::Map(vec![(
                Value::from("EventId"),
                Value::from(3),
            )])]),
        ]);
        let (_, request) = parse(request).unwrap();
        assert!(matches!(
            request,
            Request::Step {
                event_id: 3,
                data: Value::Nil
            }
        ));
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let map = Value::Map(vec![]);
        assert!(matches!(parse(map), Err(RequestError::Unanswerable(_))));
        let arity = Value::Array(vec![
            Value::from(0),
            Value::from(1),
            Value::from("plugin.Step"),
        ]);
        assert!(
            matches!(parse(arity), Err(RequestError::Invalid { ref message, .. }) if message.contains("3 elements"))
        );
        let method = Value::Array(vec![
            Value::from(0),
            Value::from(1),
            Value::from(5),
            Value::Array(vec![]),
        ]);
        assert!(
            matches!(parse(method), Err(RequestError::Invalid { ref message, .. }) if message.contains("method name must be a string"))
        );
        let unknown = Value::Array(vec![
            Value::from(0),
            Value::from(1),
            Value::from("plugin.Nope"),
            Value::Array(vec![Value::Nil]),
        ]);
        assert!(
            matches!(parse(unknown), Err(RequestError::Invalid { ref message, .. }) if message == "method plugin.Nope not implemented")
        );
    }
}
