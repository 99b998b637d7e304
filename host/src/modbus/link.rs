//! The connection to one bus (a TCP endpoint or a serial port) and its reads.
//!
//! tokio-modbus matches a TCP answer to its request by transaction id, and an answer that
//! arrives after its request timed out would be taken for the next request's. So after a
//! timeout, or any transport or protocol error, the context is dropped and the next read
//! connects again: a late reply can never be mistaken for another register's value.

use std::time::Duration;

use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::{Slave, SlaveContext};
use tokio_modbus::{Request, Response};

use super::config::{Endpoint, Parity};
use super::registers::Table;

/// Why a read gave no registers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Connecting failed.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Connecting took longer than the timeout.
    #[error("connecting timed out after {timeout_ms} ms")]
    ConnectTimeout {
        /// The timeout.
        timeout_ms: u128,
    },
    /// No answer within the timeout.
    #[error("register {address}: no answer within {timeout_ms} ms")]
    Timeout {
        /// The first register asked for.
        address: u16,
        /// The timeout.
        timeout_ms: u128,
    },
    /// The connection failed or the answer did not fit the request.
    #[error("register {address}: {reason}")]
    Transport {
        /// The first register asked for.
        address: u16,
        /// What happened.
        reason: String,
    },
    /// The device answered with a Modbus exception.
    #[error("register {address}: the device answered exception {code}")]
    Exception {
        /// The first register asked for.
        address: u16,
        /// The exception.
        code: String,
    },
    /// The device answered with another number of registers than asked for.
    #[error("register {address}: asked for {asked} registers, the device answered {answered}")]
    WrongLength {
        /// The first register asked for.
        address: u16,
        /// How many were asked for.
        asked: u16,
        /// How many came.
        answered: usize,
    },
}

impl ReadError {
    /// The error's kind, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::Connect(_) | ReadError::ConnectTimeout { .. } => "connect",
            ReadError::Timeout { .. } => "timeout",
            ReadError::Transport { .. } => "transport",
            ReadError::Exception { .. } => "exception",
            ReadError::WrongLength { .. } => "wrong_length",
        }
    }
}

/// One bus: its endpoint and, while it is up, its connection.
#[derive(Debug)]
pub struct Link {
    endpoint: Endpoint,
    context: Option<Context>,
}

impl Link {
    /// A link to `endpoint`, not yet connected.
    pub fn new(endpoint: Endpoint) -> Link {
        Link {
            endpoint,
            context: None,
        }
    }

    /// Whether a connection is up.
    pub fn connected(&self) -> bool {
        self.context.is_some()
    }
}

/// Opens a connection to `endpoint` (a free function: a `&Link` held across the await
/// would need the context to be `Sync`).
async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Context, ReadError> {
    match endpoint {
        Endpoint::Tcp(address) => {
            let connect = async {
                let stream = tokio::net::TcpStream::connect(address.as_str()).await?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(tokio_modbus::client::tcp::attach(stream))
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(context)) => Ok(context),
                Ok(Err(e)) => Err(ReadError::Connect(e)),
                Err(_) => Err(ReadError::ConnectTimeout {
                    timeout_ms: timeout.as_millis(),
                }),
            }
        }
        Endpoint::Rtu { path, baud, parity } => {
            use tokio_serial::SerialPortBuilderExt as _;
            let parity = match parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            };
            let port = tokio_serial::new(path, *baud)
                .parity(parity)
                .open_native_async()
                .map_err(|e| ReadError::Connect(std::io::Error::other(e)))?;
            Ok(tokio_modbus::client::rtu::attach(port))
        }
    }
}

impl Link {
    /// Reads `count` holding registers from `address` of unit `unit_id`, connecting first
    /// if needed; each step waits at most `timeout`.
    pub async fn read(
        &mut self,
        unit_id: u8,
        address: u16,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<u16>, ReadError> {
        self.read_table(unit_id, Table::Holding, address, count, timeout)
            .await
    }

    /// Reads `count` registers of `table` from `address` of unit `unit_id`, as
    /// [`Link::read`].
    pub async fn read_table(
        &mut self,
        unit_id: u8,
        table: Table,
        address: u16,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<u16>, ReadError> {
        let context = match &mut self.context {
            Some(context) => context,
            None => self.context.insert(connect(&self.endpoint, timeout).await?),
        };
        context.set_slave(Slave(unit_id));
        let request = match table {
            Table::Holding => Request::ReadHoldingRegisters(address, count),
            Table::Input => Request::ReadInputRegisters(address, count),
        };
        let call = context.call(request);
        let answer = tokio::time::timeout(timeout, call).await;
        let result = match answer {
            Err(_) => Err(ReadError::Timeout {
                address,
                timeout_ms: timeout.as_millis(),
            }),
            Ok(Err(e)) => Err(ReadError::Transport {
                address,
                reason: e.to_string(),
            }),
            Ok(Ok(Err(code))) => {
                return Err(ReadError::Exception {
                    address,
                    code: format!("{code:?}"),
                })
            }
            Ok(Ok(Ok(
                Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words),
            ))) if words.len() == usize::from(count) => return Ok(words),
            Ok(Ok(Ok(
                Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words),
            ))) => Err(ReadError::WrongLength {
                address,
                asked: count,
                answered: words.len(),
            }),
            Ok(Ok(Ok(other))) => Err(ReadError::Transport {
                address,
                reason: format!("answer to another request: {other:?}"),
            }),
        };
        // Anything but a clean answer or an exception leaves the stream in an unknown state.
        self.context = None;
        result
    }
}
