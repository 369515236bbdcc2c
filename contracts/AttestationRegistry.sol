// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @notice What the registry needs from a pool's revenue-share token.
interface IRevenueDistributor {
    function stablecoin() external view returns (IERC20);
    function distribute(uint256 amount) external;
}

/// @title AttestationRegistry
/// @notice Accepts each pool's revenue attestations, epoch after epoch, on M-of-N EIP-712
///         oracle signatures; keeps the Merkle root of the per-device leaves; tracks what the
///         operator owes investors and pays it out through the pool's token.
contract AttestationRegistry is AccessControl, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant ATTESTATION_TYPEHASH = keccak256(
        "Attestation(bytes32 poolId,uint64 epoch,uint64 periodStart,uint64 periodEnd,uint256 energyWh,"
        "uint256 revenueMinor,uint256 investorAmount,uint32 deviceCount,bytes32 leavesRoot)"
    );

    struct Attestation {
        bytes32 poolId;
        uint64 epoch;
        uint64 periodStart;
        uint64 periodEnd;
        uint256 energyWh;
        uint256 revenueMinor;
        uint256 investorAmount;
        uint32 deviceCount;
        bytes32 leavesRoot;
    }

    /// Storage form of an attestation: three slots (pool id and epoch are the keys).
    struct StoredAttestation {
        bytes32 leavesRoot;
        uint64 periodStart;
        uint64 periodEnd;
        uint32 deviceCount;
        uint96 investorAmount;
        uint128 energyWh;
        uint128 revenueMinor;
    }

    struct Pool {
        address token;
        uint16 shareBps;
        uint64 latestEpoch;
        uint64 lastPeriodEnd;
        uint128 owed;
        uint128 funded;
    }

    IERC20 public immutable stablecoin;

    address[] private _oracles;
    mapping(address => bool) public isOracle;
    uint8 public threshold;

    mapping(bytes32 poolId => Pool) private _pools;
    mapping(bytes32 poolId => mapping(uint64 epoch => StoredAttestation)) private _attestations;

    event PoolRegistered(bytes32 indexed poolId, address indexed token, uint16 shareBps);
    event OracleSetChanged(address[] oracles, uint8 threshold);
    event AttestationAccepted(
        bytes32 indexed poolId,
        uint64 indexed epoch,
        uint64 periodStart,
        uint64 periodEnd,
        uint256 investorAmount,
        bytes32 leavesRoot,
        bytes32 digest
    );
    event Funded(bytes32 indexed poolId, address indexed payer, uint256 amount, uint256 owedAfter);

    error ZeroAddress();
    error EmptyOracleSet();
    error DuplicateOracle(address oracle);
    error InvalidThreshold(uint256 oracles, uint256 threshold);
    error PoolAlreadyRegistered(bytes32 poolId);
    error PoolNotRegistered(bytes32 poolId);
    error InvalidShareBps(uint16 shareBps);
    error TokenStablecoinMismatch(address token);
    error BelowThreshold(uint256 signatures, uint256 threshold);
    error SignersNotAscending(address previous, address signer);
    error DuplicateSigner(address signer);
    error UnknownSigner(address signer);
    error UnexpectedEpoch(uint64 expected, uint64 got);
    error PeriodNotContiguous(uint64 expectedStart, uint64 got);
    error EmptyPeriod(uint64 periodStart, uint64 periodEnd);
    error InvestorAmountMismatch(uint256 expected, uint256 got);
    error ZeroAmount();
    error FundingExceedsOwed(uint256 owed, uint256 amount);

    constructor(address admin, address operator, IERC20 stablecoin_, address[] memory oracles_, uint8 threshold_)
        EIP712("GridshareAttestation", "1")
    {
        if (admin == address(0) || operator == address(0) || address(stablecoin_) == address(0)) {
            revert ZeroAddress();
        }
        stablecoin = stablecoin_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
        _setOracles(oracles_, threshold_);
    }

    // ----- administration -----

    /// @notice Replace the oracle set. Requires n > threshold >= n/2 + 1; with fewer than three
    ///         oracles no such threshold exists, so there every oracle must sign (threshold = n).
    function setOracles(address[] calldata oracles_, uint8 threshold_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setOracles(oracles_, threshold_);
    }

    function registerPool(bytes32 poolId, address token, uint16 shareBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (token == address(0)) revert ZeroAddress();
        if (shareBps == 0 || shareBps > 10_000) revert InvalidShareBps(shareBps);
        if (_pools[poolId].token != address(0)) revert PoolAlreadyRegistered(poolId);
        if (IRevenueDistributor(token).stablecoin() != stablecoin) revert TokenStablecoinMismatch(token);
        _pools[poolId] = Pool({token: token, shareBps: shareBps, latestEpoch: 0, lastPeriodEnd: 0, owed: 0, funded: 0});
        emit PoolRegistered(poolId, token, shareBps);
    }

    // ----- attestations -----

    /// @notice Accept the attestation of the pool's next epoch. `signatures` are EIP-712
    ///         signatures of distinct current oracles, ordered by ascending signer address.
    function submit(Attestation calldata a, bytes[] calldata signatures) external {
        Pool storage p = _pools[a.poolId];
        if (p.token == address(0)) revert PoolNotRegistered(a.poolId);
        uint64 expected = p.latestEpoch + 1;
        if (a.epoch != expected) revert UnexpectedEpoch(expected, a.epoch);
        if (a.periodEnd <= a.periodStart) revert EmptyPeriod(a.periodStart, a.periodEnd);
        if (expected > 1 && a.periodStart != p.lastPeriodEnd) {
            revert PeriodNotContiguous(p.lastPeriodEnd, a.periodStart);
        }
        uint256 share = a.revenueMinor * p.shareBps;
        if (a.investorAmount != share) revert InvestorAmountMismatch(share, a.investorAmount);

        bytes32 digest = hashAttestation(a);
        _checkSignatures(digest, signatures);

        p.latestEpoch = expected;
        p.lastPeriodEnd = a.periodEnd;
        p.owed = (uint256(p.owed) + a.investorAmount).toUint128();
        _attestations[a.poolId][expected] = StoredAttestation({
            leavesRoot: a.leavesRoot,
            periodStart: a.periodStart,
            periodEnd: a.periodEnd,
            deviceCount: a.deviceCount,
            investorAmount: a.investorAmount.toUint96(),
            energyWh: a.energyWh.toUint128(),
            revenueMinor: a.revenueMinor.toUint128()
        });
        emit AttestationAccepted(a.poolId, expected, a.periodStart, a.periodEnd, a.investorAmount, a.leavesRoot, digest);
    }

    /// @notice The EIP-712 digest the oracles sign.
    function hashAttestation(Attestation calldata a) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    ATTESTATION_TYPEHASH,
                    a.poolId,
                    a.epoch,
                    a.periodStart,
                    a.periodEnd,
                    a.energyWh,
                    a.revenueMinor,
                    a.investorAmount,
                    a.deviceCount,
                    a.leavesRoot
                )
            )
        );
    }

    /// @notice Check a per-device leaf (as stored in the tree: keccak256(bytes.concat(
    ///         keccak256(abi.encode(fields))))) against the epoch's root, sorted-pair hashing.
    function verifyLeaf(bytes32 poolId, uint64 epoch, bytes32 leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _attestations[poolId][epoch].leavesRoot;
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    // ----- funding -----

    /// @notice Pay `amount` of what is owed to the pool's investors: pulled from the caller
    ///         straight into the pool's token and distributed to its holders.
    function fund(bytes32 poolId, uint256 amount) external onlyRole(OPERATOR_ROLE) nonReentrant {
        Pool storage p = _pools[poolId];
        address token = p.token;
        if (token == address(0)) revert PoolNotRegistered(poolId);
        if (amount == 0) revert ZeroAmount();
        uint256 owed_ = p.owed;
        if (amount > owed_) revert FundingExceedsOwed(owed_, amount);
        p.owed = uint128(owed_ - amount);
        p.funded = uint128(uint256(p.funded) + amount);
        stablecoin.safeTransferFrom(msg.sender, token, amount);
        IRevenueDistributor(token).distribute(amount);
        emit Funded(poolId, msg.sender, amount, owed_ - amount);
    }

    // ----- views -----

    function latestEpoch(bytes32 poolId) external view returns (uint64) {
        return _pools[poolId].latestEpoch;
    }

    /// @notice Attested investor share not yet funded.
    function owed(bytes32 poolId) external view returns (uint256) {
        return _pools[poolId].owed;
    }

    function funded(bytes32 poolId) external view returns (uint256) {
        return _pools[poolId].funded;
    }

    /// @notice Everything ever attested for investors: owed + funded.
    function attested(bytes32 poolId) external view returns (uint256) {
        return uint256(_pools[poolId].owed) + _pools[poolId].funded;
    }

    function pool(bytes32 poolId)
        external
        view
        returns (address token, uint16 shareBps, uint64 latestEpoch_, uint64 lastPeriodEnd)
    {
        Pool storage p = _pools[poolId];
        return (p.token, p.shareBps, p.latestEpoch, p.lastPeriodEnd);
    }

    /// @notice A stored attestation (all zero for an unknown pool or epoch).
    function attestation(bytes32 poolId, uint64 epoch) external view returns (Attestation memory a) {
        StoredAttestation storage s = _attestations[poolId][epoch];
        if (s.periodEnd == 0) return a;
        a = Attestation({
            poolId: poolId,
            epoch: epoch,
            periodStart: s.periodStart,
            periodEnd: s.periodEnd,
            energyWh: s.energyWh,
            revenueMinor: s.revenueMinor,
            investorAmount: s.investorAmount,
            deviceCount: s.deviceCount,
            leavesRoot: s.leavesRoot
        });
    }

    function oracles() external view returns (address[] memory) {
        return _oracles;
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ----- internals -----

    function _checkSignatures(bytes32 digest, bytes[] calldata signatures) private view {
        uint256 needed = threshold;
        if (signatures.length < needed) revert BelowThreshold(signatures.length, needed);
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; ++i) {
            address signer = ECDSA.recover(digest, signatures[i]);
            if (signer == previous) revert DuplicateSigner(signer);
            if (signer < previous) revert SignersNotAscending(previous, signer);
            if (!isOracle[signer]) revert UnknownSigner(signer);
            previous = signer;
        }
    }

    function _setOracles(address[] memory oracles_, uint8 threshold_) private {
        uint256 n = oracles_.length;
        if (n == 0) revert EmptyOracleSet();
        bool valid = threshold_ >= n / 2 + 1 && (threshold_ < n || (n < 3 && threshold_ == n));
        if (!valid) revert InvalidThreshold(n, threshold_);
        uint256 previous = _oracles.length;
        for (uint256 i = 0; i < previous; ++i) {
            isOracle[_oracles[i]] = false;
        }
        for (uint256 i = 0; i < n; ++i) {
            address o = oracles_[i];
            if (o == address(0)) revert ZeroAddress();
            if (isOracle[o]) revert DuplicateOracle(o);
            isOracle[o] = true;
        }
        _oracles = oracles_;
        threshold = threshold_;
        emit OracleSetChanged(oracles_, threshold_);
    }
}
