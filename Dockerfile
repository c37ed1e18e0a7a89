# Builds sdhub into a small image; used by examples/docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /sdhub ./cmd/sdhub

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sdhub /bin/sdhub
EXPOSE 9099
ENTRYPOINT ["/bin/sdhub"]
