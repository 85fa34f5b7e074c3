// Copyright 2026 The mcdrop Authors.
//
// Talking HTTP/1.1 through raw sockets in tests, as a careless or hostile
// client would.

#ifndef MCDROP_TESTS_TESTING_HTTP_H_
#define MCDROP_TESTS_TESTING_HTTP_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>

namespace mcdrop::testing {

// A connection to 127.0.0.1:`port` with a 10 s receive timeout, or -1.
inline int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

inline void Send(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early; the reply says why
    done += static_cast<size_t>(n);
  }
}

// Reads until the peer closes (or the 10 s receive timeout).
inline std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, n);
  return out;
}

// Reads one response whose body is `Content-Length` long.
inline std::string ReadOne(int fd) {
  std::string out;
  char c;
  while (out.find("\r\n\r\n") == std::string::npos && recv(fd, &c, 1, 0) == 1)
    out.push_back(c);
  const size_t at = out.find("Content-Length: ");
  if (at == std::string::npos) return out;
  size_t n = std::stoul(out.substr(at + 16));
  while (n > 0 && recv(fd, &c, 1, 0) == 1) {
    out.push_back(c);
    --n;
  }
  return out;
}

}  // namespace mcdrop::testing

#endif  // MCDROP_TESTS_TESTING_HTTP_H_
