# botq's container image: one static binary, run as a non-root user on a base that holds nothing
# else (no shell, no package manager). Build it with `docker build -t botq .` or through
# docker-compose.yml; `docker run botq --version` prints the version given as VERSION.
#
# Build stage: Go, with cgo off, so that the binary needs no C library.
FROM golang:1.26 AS build
WORKDIR /src
# The module cache is a layer of its own: it changes only with go.mod and go.sum.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X github.com/botq/botq/botapi.Version=${VERSION}" \
      -o /out/botq ./cmd/botq

# Run stage: distroless static, user nonroot (uid 65532), whose home is writable for `botq dev`.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/botq /usr/local/bin/botq
USER nonroot:nonroot
WORKDIR /home/nonroot
EXPOSE 8080 8089
ENTRYPOINT ["/usr/local/bin/botq"]
CMD ["serve"]
