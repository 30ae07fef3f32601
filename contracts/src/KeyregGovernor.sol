// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Governor} from "@openzeppelin/contracts/governance/Governor.sol";
import {GovernorCountingSimple} from "@openzeppelin/contracts/governance/extensions/GovernorCountingSimple.sol";
import {GovernorSettings} from "@openzeppelin/contracts/governance/extensions/GovernorSettings.sol";
import {GovernorVotes} from "@openzeppelin/contracts/governance/extensions/GovernorVotes.sol";
import {GovernorVotesQuorumFraction} from
    "@openzeppelin/contracts/governance/extensions/GovernorVotesQuorumFraction.sol";
import {IVotes} from "@openzeppelin/contracts/governance/utils/IVotes.sol";
import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";

/// The one view of KeyregMembershipToken the governor reads (at deployment).
interface IKeyregMembership {
    function executor() external view returns (address);
}

/// @title KeyregGovernorBase: the rules every keyreg DAO shares, whatever executes its proposals.
/// @notice A keyreg DAO can do two things: revoke keys of subjects that named it, through
/// KeyRegistry.revokeByGovernance, and change its own membership, through addMember / removeMember
/// on its own membership token. That is enforced twice: the registry accepts the call only from the
/// governor (or timelock) a subject named, the token only from its executor, and this governor
/// accepts only proposals whose every action is one of those three calls, on its registry or its
/// own token, with no value. So its settings, its timelock and `relay` are unreachable: they would
/// need a proposal targeting something else.
///
/// Its own token: the token is an immutable of the governor (GovernorVotes), and the deployment
/// reverts (ForeignMembershipToken) unless that token names this DAO's executor as the only account
/// allowed to change membership. So the DAO's membership is changed by this DAO's votes and nobody
/// else's.
///
/// Binding of the proposal id: a proposal's id is the hash of its calldata, so the calldata cannot
/// carry it. Proposals pass 0 as revokeByGovernance's proposalId; the governor writes the real id
/// into that word when it queues and executes (the same bytes both times, so a timelock's operation
/// hash matches). Invariant: every GovernanceRevoked event this governor causes names the proposal
/// that executed it.
///
/// Canonical calldata: propose accepts a revocation only if its calldata is exactly
/// abi.encodeWithSelector(REVOKE_SELECTOR, subject, keyId, effectiveAt, reasonHash, 0) of its own
/// decoded arguments, and a membership change only if it is exactly
/// abi.encodeWithSelector(ADD_MEMBER_SELECTOR, member, weight) or
/// abi.encodeWithSelector(REMOVE_MEMBER_SELECTOR, member) (clean address word, no extra bytes), so
/// what voters decode is what executes. ABI decoding tolerates non-canonical layouts (a string offset pointing into
/// the head, overlapping words, dirty padding), and with one of those the word the governor
/// patches could be part of keyId, so voters would read one revocation and execution would run
/// another. In canonical layout the fifth head word is proposalId and nothing else.
///
/// Nothing of value can enter: no proposal moves value (values must be 0), so ETH, ERC-721 or
/// ERC-1155 tokens sent here could never leave; receive, the token callbacks and a paid execute
/// revert instead (GovernorDisabledDeposit). (A plain ERC-20 transfer cannot be refused by any
/// contract; it is lost like a transfer to any address without a key.)
///
/// Votes of accounts without voting power at the snapshot are refused (NotAMember), rather than
/// counted as zero, so a stray or forged ballot fails loudly.
abstract contract KeyregGovernorBase is
    Governor,
    GovernorSettings,
    GovernorCountingSimple,
    GovernorVotes,
    GovernorVotesQuorumFraction
{
    /// KeyRegistry.revokeByGovernance(bytes32,string,uint64,bytes32,uint256)
    bytes4 public constant REVOKE_SELECTOR = bytes4(keccak256("revokeByGovernance(bytes32,string,uint64,bytes32,uint256)"));
    /// Byte offset of the proposalId argument (the fifth static word) in revokeByGovernance calldata.
    uint256 private constant _PROPOSAL_ID_OFFSET = 4 + 4 * 32;
    /// Canonical layout: 5 head words, then keyId's length word, then its padded bytes.
    uint256 private constant _KEY_ID_HEAD = 5 * 32;
    uint256 private constant _MIN_REVOCATION_BYTES = 4 + 6 * 32;
    /// KeyregMembershipToken.addMember(address,uint256) and removeMember(address)
    bytes4 public constant ADD_MEMBER_SELECTOR = bytes4(keccak256("addMember(address,uint256)"));
    bytes4 public constant REMOVE_MEMBER_SELECTOR = bytes4(keccak256("removeMember(address)"));

    /// The KeyRegistry this DAO may revoke in.
    address public immutable registry;

    /// Action `index` is none of revokeByGovernance on the registry, addMember / removeMember on
    /// the DAO's own token (or it carries value).
    error ActionNotAllowed(uint256 index);
    /// Action `index` adds the zero address, or adds a member with weight 0: it could never execute.
    error InvalidMembershipChange(uint256 index);
    /// The token's executor (who may change membership) is not this DAO's executor.
    error ForeignMembershipToken(address tokenExecutor, address daoExecutor);
    error ProposalIdNotZero(uint256 index);
    error NonCanonicalCalldata(uint256 index);
    error NotAMember(address voter);

    constructor(
        string memory name_,
        IVotes token_,
        address registry_,
        uint48 votingDelay_,
        uint32 votingPeriod_,
        uint256 proposalThreshold_,
        uint256 quorumPercent_
    )
        Governor(name_)
        GovernorSettings(votingDelay_, votingPeriod_, proposalThreshold_)
        GovernorVotes(token_)
        GovernorVotesQuorumFraction(quorumPercent_)
    {
        registry = registry_;
    }

    /// Only revocations in `registry` and membership changes of `token()` can be proposed (see the
    /// contract notes).
    function propose(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        string memory description
    ) public virtual override returns (uint256) {
        uint256 n = targets.length;
        if (n != values.length || n != calldatas.length) {
            revert GovernorInvalidProposalLength(n, calldatas.length, values.length);
        }
        address membership = address(token());
        for (uint256 i = 0; i < n; ++i) {
            if (values[i] != 0) revert ActionNotAllowed(i);
            if (targets[i] == registry) _checkRevocation(i, calldatas[i]);
            else if (targets[i] == membership) _checkMembershipChange(i, calldatas[i]);
            else revert ActionNotAllowed(i);
        }
        return super.propose(targets, values, calldatas, description);
    }

    /// The calldata a proposal's actions run with: each revocation names `proposalId`.
    function boundCalldatas(uint256 proposalId, bytes[] memory calldatas) public pure returns (bytes[] memory out) {
        out = new bytes[](calldatas.length);
        for (uint256 i = 0; i < calldatas.length; ++i) {
            bytes memory data = bytes.concat(calldatas[i]); // a copy: the caller's array is left as is
            uint256 offset = _PROPOSAL_ID_OFFSET;
            if (data.length >= offset + 32 && bytes4(data) == REVOKE_SELECTOR) {
                assembly ("memory-safe") {
                    mstore(add(add(data, 32), offset), proposalId)
                }
            }
            out[i] = data;
        }
    }

    /// Reverts unless `data` is revokeByGovernance calldata in canonical ABI layout with proposalId 0.
    /// The cheap layout checks come first so that abi.decode below cannot fail (its own failure
    /// would be an unnamed revert); the final comparison with the re-encoding catches the rest
    /// (non-zero padding after keyId).
    function _checkRevocation(uint256 i, bytes memory data) private pure {
        uint256 size = data.length;
        if (size < _MIN_REVOCATION_BYTES || bytes4(data) != REVOKE_SELECTOR) revert ActionNotAllowed(i);
        uint256 keyIdLength = _wordAt(data, 4 + _KEY_ID_HEAD);
        if (
            _wordAt(data, 4 + 32) != _KEY_ID_HEAD // keyId's offset: right after the head
                || _wordAt(data, 4 + 2 * 32) > type(uint64).max // effectiveAt without dirty bits
                || keyIdLength > size || size != _MIN_REVOCATION_BYTES + ((keyIdLength + 31) / 32) * 32
        ) revert NonCanonicalCalldata(i);
        if (_wordAt(data, _PROPOSAL_ID_OFFSET) != 0) revert ProposalIdNotZero(i);
        bytes memory args = new bytes(size - 4);
        assembly ("memory-safe") {
            mcopy(add(args, 32), add(data, 36), sub(size, 4))
        }
        (bytes32 subject, string memory keyId, uint64 effectiveAt, bytes32 reasonHash,) =
            abi.decode(args, (bytes32, string, uint64, bytes32, uint256));
        bytes memory canonical = abi.encodeWithSelector(REVOKE_SELECTOR, subject, keyId, effectiveAt, reasonHash, 0);
        if (keccak256(canonical) != keccak256(data)) revert NonCanonicalCalldata(i);
    }

    /// Reverts unless `data` is addMember(member, weight) or removeMember(member) in canonical ABI
    /// layout: exactly the head words, the address word with its upper 12 bytes zero.
    function _checkMembershipChange(uint256 i, bytes memory data) private pure {
        uint256 size = data.length;
        if (size < 4) revert ActionNotAllowed(i);
        bytes4 selector = bytes4(data);
        if (selector == ADD_MEMBER_SELECTOR) {
            if (size != 4 + 2 * 32) revert NonCanonicalCalldata(i);
        } else if (selector == REMOVE_MEMBER_SELECTOR) {
            if (size != 4 + 32) revert NonCanonicalCalldata(i);
        } else {
            revert ActionNotAllowed(i);
        }
        uint256 member = _wordAt(data, 4);
        if (member >> 160 != 0) revert NonCanonicalCalldata(i);
        if (member == 0 || (selector == ADD_MEMBER_SELECTOR && _wordAt(data, 4 + 32) == 0)) {
            revert InvalidMembershipChange(i);
        }
    }

    /// Reverts unless `token()` lets exactly `daoExecutor` change membership (called by each
    /// concrete governor's constructor, once its executor is known).
    function _requireOwnToken(address daoExecutor) internal view {
        address tokenExecutor = IKeyregMembership(address(token())).executor();
        if (tokenExecutor != daoExecutor) revert ForeignMembershipToken(tokenExecutor, daoExecutor);
    }

    // ------------------------------------------------------------------------------------------
    // Nothing of value can leave, so nothing of value may enter (see the contract notes).

    receive() external payable virtual override {
        revert GovernorDisabledDeposit();
    }

    function onERC721Received(address, address, uint256, bytes memory) public virtual override returns (bytes4) {
        revert GovernorDisabledDeposit();
    }

    function onERC1155Received(address, address, uint256, uint256, bytes memory)
        public
        virtual
        override
        returns (bytes4)
    {
        revert GovernorDisabledDeposit();
    }

    function onERC1155BatchReceived(address, address, uint256[] memory, uint256[] memory, bytes memory)
        public
        virtual
        override
        returns (bytes4)
    {
        revert GovernorDisabledDeposit();
    }

    /// A paid execute would strand its value here (no action carries value).
    function execute(address[] memory targets, uint256[] memory values, bytes[] memory calldatas, bytes32 descriptionHash)
        public
        payable
        virtual
        override
        returns (uint256)
    {
        if (msg.value != 0) revert GovernorDisabledDeposit();
        return super.execute(targets, values, calldatas, descriptionHash);
    }

    /// This governor takes no tokens, so it does not claim to be an ERC-1155 receiver.
    function supportsInterface(bytes4 interfaceId) public view virtual override returns (bool) {
        return interfaceId != type(IERC1155Receiver).interfaceId && super.supportsInterface(interfaceId);
    }

    function _wordAt(bytes memory data, uint256 offset) private pure returns (uint256 word) {
        assembly ("memory-safe") {
            word := mload(add(add(data, 32), offset))
        }
    }

    function _countVote(uint256 proposalId, address account, uint8 support, uint256 totalWeight, bytes memory params)
        internal
        virtual
        override(Governor, GovernorCountingSimple)
        returns (uint256)
    {
        if (totalWeight == 0) revert NotAMember(account);
        return super._countVote(proposalId, account, support, totalWeight, params);
    }

    // ------------------------------------------------------------------------------------------
    // Solidity's required overrides (no behaviour of their own)

    function votingDelay() public view virtual override(Governor, GovernorSettings) returns (uint256) {
        return super.votingDelay();
    }

    function votingPeriod() public view virtual override(Governor, GovernorSettings) returns (uint256) {
        return super.votingPeriod();
    }

    function proposalThreshold() public view virtual override(Governor, GovernorSettings) returns (uint256) {
        return super.proposalThreshold();
    }

    function quorum(uint256 timepoint)
        public
        view
        virtual
        override(Governor, GovernorVotesQuorumFraction)
        returns (uint256)
    {
        return super.quorum(timepoint);
    }
}

/// @title KeyregGovernor: a keyreg DAO that executes its revocations itself.
/// @notice Subjects name this contract's address as their governor.
contract KeyregGovernor is KeyregGovernorBase {
    constructor(
        string memory name_,
        IVotes token_,
        address registry_,
        uint48 votingDelay_,
        uint32 votingPeriod_,
        uint256 proposalThreshold_,
        uint256 quorumPercent_
    ) KeyregGovernorBase(name_, token_, registry_, votingDelay_, votingPeriod_, proposalThreshold_, quorumPercent_) {
        _requireOwnToken(address(this));
    }

    function _executeOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal virtual override {
        super._executeOperations(proposalId, targets, values, boundCalldatas(proposalId, calldatas), descriptionHash);
    }
}
